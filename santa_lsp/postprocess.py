"""Turn raw model output into a suggestion worth showing: stop rules and filters.

In order: cut at end-of-text / FIM markers spelled out as text; cut to the shape (one line,
or the block the cursor is in: stop when indentation returns above it, or, at the top level,
at a blank line followed by a dedent); cut where the output starts repeating the lines that follow the
cursor or itself; drop an incomplete last line when generation hit the token limit; trim
trailing whitespace (not where code follows on the line); fit the end of the suggestion to
the rest of the cursor's line (auto-closed brackets and quotes) so that accepting it doubles
nothing, with brackets balanced against the text before the cursor (from the start of the
document, so a docstring cannot flip the quote parity) and the lines after it (a closer the
document already has is not typed again); drop what is left if it is blank or a copy of the
line above.

`stop_early` applies the same cut rules to the complete lines generated so far, so the
engine stops decoding as soon as the cut is certain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from santa_lsp.context import BLOCK_OPENERS, CLOSERS, HASH_COMMENTS, Context, indent_width
from santa_lsp.suggestion import Suggestion

# Control tokens a model may spell out as plain text; the suggestion ends before any of them.
STOP_STRINGS = ("<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>", "<fim_", "<|file_sep|>")
# More blank lines than this before any code: the model is lost (seen: 56 newlines, then junk).
MAX_LEADING_BLANK_LINES = 2
# Longest block (in lines) whose immediate repetition is detected.
MAX_REPEAT_BLOCK = 4
# A copy of the line above shorter than this may be deliberate (`}`, `pass`, `print()`).
MIN_COPIED_LINE = 8
# A line ending in the same short unit repeated this often has degenerated (`a, a, a, a, a, a`,
# `* * * * * *`); a single repeated punctuation character is a ruler (`# -----`) and stays.
_LINE_REPETITION = re.compile(r"(.{1,20}?)\1{4,}$")
_OPENERS = {")": "(", "]": "[", "}": "{"}
# A line of only these closes the block above it (`}`, `});`, `)`).
CLOSING_PUNCTUATION = set(")]};,")
# How much text before the cursor the bracket scan reads: from the document's start up to this
# (a regex scan, ~10 ms for 200 kB), so that it starts outside strings; and after the cursor.
BRACKET_CONTEXT_CHARS = 200_000
BRACKET_LOOKAHEAD_CHARS = 50_000
# How many lines after the cursor's line decide between ways to meet the rest of the line.
NEAR_LINES = 3
# Degenerate repetition inside a line: a unit of 2-20 characters with two or more letters, four
# times in a row (`to_to_to_to_`). Such a line is dropped, and decoding stops at it.
_INLINE_REPETITION = re.compile(r"(.{2,20}?)\1{3,}")


def stop_early(text: str, ctx: Context) -> bool:
    """True once the generated text is certain to be cut before its end (saves decode steps)."""
    if _stop_string_at(text) >= 0:
        return True
    if ctx.mode == "single-line" and ctx.line_prefix.strip() and "\n" in text:
        return True  # the line is complete
    if not text.strip():
        return text.count("\n") > MAX_LEADING_BLANK_LINES + bool(ctx.line_prefix.strip())
    lines = text.split("\n")
    if _degenerate_at(lines[-1]) >= 0:
        return True
    if ctx.mode == "single-line":
        return "\n" in _skip_leading_blank_lines(text, ctx)
    complete = lines[:-1]  # the last line may still grow
    return len(complete) > 1 and _cut_lines(complete, ctx) < len(complete)


def clean(text: str, ctx: Context, truncated: bool = False) -> Suggestion:
    """Cut, trim and filter `text` (generated at the cursor); an empty text means show nothing.

    `truncated`: generation hit the token limit, so the last line may be incomplete.
    """
    text = text.replace("\r\n", "\n")
    stop = _stop_string_at(text)
    if stop >= 0:
        text, truncated = text[:stop], False
    text = _skip_leading_blank_lines(text, ctx)
    lines = text.split("\n")
    if ctx.mode == "single-line":
        lines = lines[:1]
    elif truncated:
        lines = lines[:-1]  # a block never ends mid-line: `if item is not None` without its `:`
    if not lines:
        return Suggestion("")
    lines = lines[: _cut_lines(lines, ctx)]
    # Trailing blanks go, except before code on the cursor's line: `if (|{` needs `esc) `.
    keep_last = len(lines) == 1 and ctx.line_suffix[:1] not in ("", " ", "\t")
    lines = [line if keep_last else line.rstrip() for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    text = "\n".join(lines)
    if not text.strip() or _copies_line_above(lines, ctx):
        return Suggestion("")
    if ctx.opens_line:
        # Whole lines inserted above the cursor's line: end with the line break.
        text = _balanced_prefix(text, ctx)
        return Suggestion(text + "\n" if text.strip() else "")
    suggestion = _fit_to_line_suffix(text, ctx)
    return suggestion if suggestion.text.strip() else Suggestion("")


# -- stop rules ------------------------------------------------------------------------------
def _skip_leading_blank_lines(text: str, ctx: Context) -> str:
    """A suggestion never begins with blank lines.

    On a blank cursor line (column 0 or editor-indented) the suggestion starts at the first line
    with code, its indentation less the cursor's column; code indented less than the cursor
    would leave the block the cursor is in (`\n\n\nreturn x + 1` in a body), so nothing is left.
    After code on the cursor's line, the line break stays and the blank lines after it go.
    More than MAX_LEADING_BLANK_LINES blank lines mean the model is lost: nothing is left.
    """
    first, sep, rest = text.partition("\n")
    if first.strip() or not sep:
        return text
    stripped = text.lstrip(" \t\n")
    blank = text[: len(text) - len(stripped)]
    line_start = blank.rfind("\n") + 1
    if blank.count("\n") > MAX_LEADING_BLANK_LINES + bool(ctx.line_prefix.strip()):
        return ""
    code = text[line_start:]
    if ctx.line_prefix.strip():
        return "\n" + code
    indent = ctx.line_prefix
    if not code.startswith(indent):
        return ""
    return code[len(indent):]


def _degenerate_at(line: str) -> int:
    """Offset where a line degenerates into a repeated unit (`to_to_to_to_`), or -1."""
    for m in _INLINE_REPETITION.finditer(line):
        if sum(c.isalpha() for c in m.group(1)) >= 2:
            return m.start()
    return -1


def _stop_string_at(text: str) -> int:
    hits = [i for i in (text.find(s) for s in STOP_STRINGS) if i >= 0]
    return min(hits) if hits else -1


def _cut_lines(lines: list[str], ctx: Context) -> int:
    """Index of the first line to drop (len(lines) when none): scope, duplicates, repetition."""
    cut = len(lines)
    if ctx.mode == "multi-line":
        cut = min(cut, _block_end(lines, ctx))
    cut = min(cut, _duplicate_of_following(lines, ctx))
    cut = min(cut, _repetition_start(lines, ctx))
    return cut


def _block_end(lines: list[str], ctx: Context) -> int:
    """Where the suggestion leaves the block the cursor is in.

    The block's indentation is that of the suggestion's first non-blank line (with the text
    before the cursor on its line); when the cursor's line opens a block (`{|`, `def f():|`),
    that of the first line of the body. A later line indented less leaves the block (a line
    of closing brackets there, like `}`, still belongs to it). At the top level, where blank
    lines separate definitions, a blank line followed by a dedent ends the suggestion too;
    inside a body they only separate its paragraphs (measured on HumanEval bodies: applying
    that rule in bodies cut 39 of 127 multi-line solutions short).
    """
    full = [ctx.line_prefix + lines[0], *lines[1:]]
    first = next((i for i, line in enumerate(full) if line.strip()), None)
    if first is None:
        return len(lines)
    if first == 0 and ctx.line_prefix.strip() and full[0].rstrip().endswith(BLOCK_OPENERS):
        body = next((i for i in range(1, len(full)) if full[i].strip()), None)
        if body is None:
            return len(lines)
        if indent_width(full[body]) <= indent_width(full[0]):
            return body + 1 if _closes_only(full[body]) else body  # an empty body
        first = body
    block = indent_width(full[first])
    last_indent, blank_at = block, None
    for i in range(first + 1, len(full)):
        line = full[i]
        if not line.strip():
            blank_at = i if blank_at is None else blank_at
            continue
        width = indent_width(line)
        if width < block:
            if blank_at is not None:
                return blank_at
            # A line of closers ends the block, unless the document closes it itself (its next
            # line is one): then it would be typed twice.
            return i + 1 if _closes_only(line) and not _document_closes(ctx, block, width) else i
        if blank_at is not None and width < last_indent and block == 0:
            return blank_at
        last_indent, blank_at = width, None
    return len(lines)


def _document_closes(ctx: Context, block: int, width: int) -> bool:
    """The document's next line of code after the cursor's line closes the block (`}`, `});`)
    at the closer's indentation `width` or deeper (a shallower one closes an outer block)."""
    nxt = next((line for line in ctx.following_lines if line.strip()), None)
    return nxt is not None and nxt.strip()[0] in _OPENERS and width <= indent_width(nxt) < block


def _closes_only(line: str) -> bool:
    return bool(line.strip()) and set(line.strip()) <= CLOSING_PUNCTUATION


def _duplicate_of_following(lines: list[str], ctx: Context) -> int:
    """Index of the first generated line that repeats the document's next line of code.

    FIM models often run on past the hole into the text after it. A line counts as a copy
    when it equals (indentation included) the next non-blank line after the cursor's line,
    or, when the suggestion is inserted above the cursor's line, that line itself.
    """
    following = ([ctx.line_suffix] if ctx.opens_line else []) + ctx.following_lines
    target = next((line.rstrip() for line in following if line.strip()), None)
    if target is None:
        return len(lines)
    for i in range(len(lines)):
        line = (ctx.line_prefix + lines[i]) if i == 0 else lines[i]
        if line.rstrip() == target:
            return i
    return len(lines)


def _repetition_start(lines: list[str], ctx: Context) -> int:
    """Index where the output starts repeating itself: a block of lines right after itself, or
    a line that ends in a short unit repeated many times (that line goes too)."""
    lines = [ctx.line_prefix + lines[0], *lines[1:]] if lines else lines
    for i, line in enumerate(lines):
        # The repeated run ends the line, so its tail decides: a 1 MB line must not cost seconds.
        m = _LINE_REPETITION.search(line.strip()[-200:])
        if m and (any(c.isalnum() for c in m.group(1)) or len(set(m.group(1))) > 1):  # `====` is a ruler
            return i
        if _degenerate_at(line[-400:]) >= 0:
            return i
    for i in range(len(lines)):
        for k in range(1, MAX_REPEAT_BLOCK + 1):
            block = lines[i : i + k]
            if len(lines) >= i + 2 * k and any(s.strip() for s in block) and block == lines[i + k : i + 2 * k]:
                return i + k
    return len(lines)


def _copies_line_above(lines: list[str], ctx: Context) -> bool:
    """A suggestion whose first line is the line just above, typed again."""
    prev = ctx.previous_line
    if prev is None or ctx.line_prefix.strip():
        return False
    first = (ctx.line_prefix + lines[0]).rstrip()
    return len(first.strip()) >= MIN_COPIED_LINE and first == prev.rstrip()


# -- the rest of the line and brackets -------------------------------------------------------
def _fit_to_line_suffix(text: str, ctx: Context) -> Suggestion:
    """Choose how the suggestion meets the rest of the cursor's line so that nothing doubles.

    Candidates, ranked by how their brackets and quotes balance against the document after them:
    the text without a tail equal to the rest of the line (the model ran on and typed it again:
    `q__(self, other):` over `(self, other):`); the text as is; the text replacing the rest of
    the line, when that rest is only closing punctuation the text also contains (`"hi", end="")`
    over `)`). Failing all of them, the text is cut before its first closer that is not owed.
    """
    rest = ctx.line_suffix.rstrip()
    if not rest.strip():
        return Suggestion(_balanced_prefix(text, ctx))
    candidates = []
    retyped = rest.lstrip()
    ended = text.rstrip(" \t")  # the rest is compared without its trailing blanks
    if ended.endswith(retyped) and len(ended) > len(retyped):
        trimmed = ended[: len(ended) - len(retyped)]
        if rest[:1].isspace() and not trimmed.rstrip(" \t").endswith("\n"):  # keep a closer's own line
            trimmed = trimmed.rstrip()
        candidates.append(Suggestion(trimmed))
    candidates.append(Suggestion(text))
    if set(rest) <= CLOSERS and _is_subsequence(rest.strip().replace(" ", ""), text.split("\n", 1)[0]):
        candidates.append(Suggestion(text, len(rest)))
    baseline = _check(ctx, "", 0)
    ranked = []
    for order, cand in enumerate(candidates):
        fit = _check(ctx, cand.text, cand.replace_len)
        # A string the user opened on this line may be closed by the suggestion.
        quoted = fit.quote == baseline.quote or (not fit.quote and len(baseline.quote) == 1)
        if cand.text.strip() and fit.unmatched < 0 and quoted:
            # Best: fewest closers of the next lines left closing nothing (`val !== |)` over
            # `\n  ) {`: the `)` is the call's); then the line ends with the brackets the document
            # had open there, or fewer (the suggestion closed what the user had not typed yet);
            # then the order above.
            balanced = fit.stack == baseline.stack[: len(fit.stack)]
            ranked.append((fit.near, not balanced, order, cand))
    if ranked:
        return min(ranked, key=lambda r: r[:3])[3]
    return Suggestion(_balanced_prefix(text, ctx))


def _balanced_prefix(text: str, ctx: Context) -> str:
    """`text` cut before its first closer that is not owed (and its trailing blanks)."""
    fit = _check(ctx, text, 0)
    return text if fit.unmatched < 0 else text[: fit.unmatched].rstrip()


def _is_subsequence(needle: str, hay: str) -> bool:
    it = iter(hay)
    return all(ch in it for ch in needle)


@dataclass
class _ScanState:
    stack: list[str]
    quote: str = ""  # the open string's delimiter at the end, '' outside strings
    comment: str = ""  # "line" or "block" inside a comment
    hash_comments: bool = True  # `#` starts a comment (Python, shell); else `//` and `/* */`
    unmatched: int = -1  # offset of the first closer that closes nothing
    unmatched_count: int = 0
    # Offsets of closers that close a bracket opened before the scanned text.
    outer_pops: list[int] = field(default_factory=list)

    local: bool = False  # scanned from the cursor's line only (inside a docstring)

    def copy(self) -> _ScanState:
        return _ScanState(list(self.stack), self.quote, self.comment, self.hash_comments, local=self.local)


@dataclass
class _Fit:
    unmatched: int  # offset in the suggestion of its first closer that closes nothing or doubles one
    stack: list[str]  # brackets open after the suggestion and the rest of the line
    quote: str  # string open there
    near: int  # closers in the rest of the line and the next NEAR_LINES lines that close nothing


_LEXEMES = re.compile(r"""\\.|\"\"\"|'''|["'`\n()\[\]{}#]|//|/\*|\*/""", re.S)


def _advance(state: _ScanState, text: str) -> None:
    """Scan `text` from `state`, changing it in place: strings in ', " and ` (triple quotes span
    lines, others end at the line's end), comments, brackets."""
    floor = len(state.stack)
    for m in _LEXEMES.finditer(text):
        tok = m.group()
        if state.comment:
            if (state.comment == "line" and tok == "\n") or (state.comment == "block" and tok == "*/"):
                state.comment = ""
            continue
        if state.quote:
            if tok == state.quote:
                state.quote = ""
            elif tok == "\n" and len(state.quote) == 1 and state.quote != "`":
                state.quote = ""
            continue
        if tok[0] == "\\":
            continue
        if tok == "#":
            state.comment = "line" if state.hash_comments else ""
        elif tok in ("//", "/*"):
            if not state.hash_comments:
                state.comment = "line" if tok == "//" else "block"
        elif tok[0] in "\"'`":
            state.quote = tok
        elif tok in "([{":
            state.stack.append(tok)
        elif tok in _OPENERS:
            if state.stack and state.stack[-1] == _OPENERS[tok]:
                state.stack.pop()
                if len(state.stack) < floor:
                    floor = len(state.stack)
                    state.outer_pops.append(m.start())
            else:
                state.unmatched_count += 1
                if state.unmatched < 0:
                    state.unmatched = m.start()


def _state_at_cursor(ctx: Context) -> _ScanState:
    """Brackets, strings and comments open at the cursor, scanned from the document's start (at
    most BRACKET_CONTEXT_CHARS back, from a line start); unmatched closers before it are ignored
    (the window may start mid-expression). Computed once per request."""
    cached = ctx.__dict__.get("_scan_state")
    if cached is not None:
        return cached
    start = max(0, ctx.cursor - BRACKET_CONTEXT_CHARS)
    if start > 0:
        nl = ctx.text.find("\n", start, ctx.cursor)
        start = nl + 1 if nl >= 0 else ctx.cursor
    before = ctx.text[start : ctx.cursor]
    if ctx.language:
        hash_comments = ctx.language in HASH_COMMENTS
    else:  # an unknown language: guess from the text
        hash_comments = bool(re.search(r"^\s*(def \w|from [\w.]+ import |import [\w.]+\s*$|#)", before, re.M)) \
            or not re.search(r"(^|\s)(//|/\*)|[;{]\s*$", before, re.M)
    state = _ScanState([], hash_comments=hash_comments)
    _advance(state, before)
    if len(state.quote) == 3 or state.comment == "block":
        # In a docstring or block comment (a doctest, code in prose): the line's own brackets.
        state = _ScanState([], hash_comments=state.hash_comments)
        _advance(state, ctx.line_prefix)
        state.local = True
    state = state.copy()
    ctx.__dict__["_scan_state"] = state
    return state


def _unmatched_after(ctx: Context, state: _ScanState, replace_len: int) -> int:
    """How many closers of the document after the cursor (and the replaced range) close nothing,
    scanned from `state`, within BRACKET_LOOKAHEAD_CHARS."""
    cache = ctx.__dict__.setdefault("_unmatched_after", {})
    if state is _state_at_cursor(ctx) and replace_len in cache:
        return cache[replace_len]
    at = ctx.cursor + replace_len
    probe = state.copy()
    end = at + (len(ctx.line_suffix) - replace_len if state.local else BRACKET_LOOKAHEAD_CHARS)
    _advance(probe, ctx.text[at:end])
    if state is _state_at_cursor(ctx):
        cache[replace_len] = probe.unmatched_count
    return probe.unmatched_count


def _check(ctx: Context, suggestion: str, replace_len: int) -> _Fit:
    """How `suggestion`, replacing `replace_len` characters after the cursor, fits the brackets.

    A closer in the suggestion is not owed when it closes nothing, or when it closes a bracket
    that the document closes itself after the cursor: with it accepted, more of the document's
    closers would close nothing (a lone `}` in an empty body whose `}` is on the next line).
    The document's closers close the innermost brackets first, so the suggestion's last
    closers of outer brackets are the doubled ones.
    """
    at_cursor = _state_at_cursor(ctx)
    state = at_cursor.copy()
    _advance(state, suggestion)
    unmatched = state.unmatched
    # In a docstring the line's own brackets are all there is: prose may leave one unclosed.
    extra = 0 if at_cursor.local else \
        _unmatched_after(ctx, state, replace_len) - _unmatched_after(ctx, at_cursor, replace_len)
    if extra > 0:
        doubled = state.outer_pops[-extra] if extra <= len(state.outer_pops) else 0
        unmatched = doubled if unmatched < 0 else min(unmatched, doubled)
    rest = state.copy()
    _advance(rest, ctx.line_suffix[replace_len:].rstrip())
    if unmatched < 0 and extra <= 0 and not at_cursor.local and rest.unmatched_count > _rest_unmatched(ctx, replace_len):
        unmatched = len(suggestion)  # a closer in the rest of the line now closes nothing
    near = state.copy()
    at = ctx.cursor + replace_len
    end = at
    for _ in range(NEAR_LINES + 1):
        nl = ctx.text.find("\n", end + 1)
        end = len(ctx.text) if nl < 0 else nl
    _advance(near, ctx.text[at:end])
    return _Fit(unmatched, rest.stack, rest.quote, near.unmatched_count)


def _rest_unmatched(ctx: Context, replace_len: int) -> int:
    """Closers in the rest of the cursor's line that close nothing without a suggestion."""
    state = _state_at_cursor(ctx).copy()
    _advance(state, ctx.line_suffix[replace_len:].rstrip())
    return state.unmatched_count
