"""Turn raw model output into a suggestion worth showing: stop rules and filters.

In order: cut at end-of-text / FIM markers spelled out as text; cut to the shape (one line,
or the block the cursor is in: stop when indentation returns above it, or, at the top level,
at a blank line followed by a dedent); cut where the output starts repeating the lines that follow the
cursor or itself; trim trailing whitespace; fit the end of the suggestion to the rest of
the cursor's line (auto-closed brackets and quotes) so that accepting it doubles nothing,
with brackets balanced against that rest; drop what is left if it is blank, trivially short
or a copy of the line above.

`stop_early` applies the same cut rules to the complete lines generated so far, so the
engine stops decoding as soon as the cut is certain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from santa_lsp.context import BLOCK_OPENERS, CLOSERS, Context, indent_width

# Control tokens a model may spell out as plain text; the suggestion ends before any of them.
STOP_STRINGS = ("<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>", "<fim_", "<|file_sep|>")
# Suggestions with fewer non-blank characters are not worth showing (closing brackets aside).
MIN_CHARS = 2
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
# How much text before the cursor the bracket scan reads.
BRACKET_CONTEXT_CHARS = 4000


@dataclass
class Suggestion:
    """Insert `text` at the cursor, replacing the `replace_len` characters after it."""

    text: str
    replace_len: int = 0


def stop_early(text: str, ctx: Context) -> bool:
    """True once the generated text is certain to be cut before its end (saves decode steps)."""
    if _stop_string_at(text) >= 0:
        return True
    if ctx.mode == "single-line":
        return "\n" in _skip_leading_blank_lines(text, ctx)
    lines = text.split("\n")
    complete = lines[:-1]  # the last line may still grow
    return len(complete) > 1 and _cut_lines(complete, ctx) < len(complete)


def clean(text: str, ctx: Context) -> Suggestion:
    """Cut, trim and filter `text` (generated at the cursor); an empty text means show nothing."""
    text = text.replace("\r\n", "\n")
    stop = _stop_string_at(text)
    if stop >= 0:
        text = text[:stop]
    if ctx.mode == "single-line":
        text = _skip_leading_blank_lines(text, ctx)
    lines = text.split("\n")
    if ctx.mode == "single-line":
        lines = lines[:1]
    lines = lines[: _cut_lines(lines, ctx)]
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    text = "\n".join(lines)
    if not text.strip() or _copies_line_above(lines, ctx):
        return Suggestion("")
    if ctx.opens_line:
        # Whole lines inserted above the cursor's line: end with the line break.
        suggestion = Suggestion(_balanced_prefix(text, ctx) + "\n")
    else:
        suggestion = _fit_to_line_suffix(text, ctx)
    visible = suggestion.text.strip()
    if len(visible.replace(" ", "")) < MIN_CHARS and not set(visible) <= set(")]}"):
        return Suggestion("")
    return suggestion


# -- stop rules ------------------------------------------------------------------------------
def _skip_leading_blank_lines(text: str, ctx: Context) -> str:
    """At column 0 a single-line suggestion is the first line with code: output that opens with
    a blank line (common after the previous line's newline) still has one to show."""
    if ctx.line_prefix:
        return text
    stripped = text.lstrip(" \t\n")
    return text[text.rfind("\n", 0, len(text) - len(stripped)) + 1 :]


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
            return i + 1 if _closes_only(line) else i
        if blank_at is not None and width < last_indent and block == 0:
            return blank_at
        last_indent, blank_at = width, None
    return len(lines)


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

    Candidates, the first whose brackets and quotes balance against the rest of the line wins:
    the text as is; the text without a tail equal to the rest of the line (the model typed the
    auto-closed `)` again); the text replacing the rest of the line, when that rest is only
    closing punctuation the text also contains (`"hi", end="")` over `)`). Failing all of
    them, the text is cut before its first unmatched closer.
    """
    rest = ctx.line_suffix.rstrip()
    if not rest.strip():
        return Suggestion(_balanced_prefix(text, ctx))
    candidates = [Suggestion(text)]
    tail = rest.strip()
    if text.endswith(tail):
        trimmed = text[: -len(tail)]
        if not trimmed.rstrip(" \t").endswith("\n"):  # keep a closer's own line: `{...\n}`
            trimmed = trimmed.rstrip()
        candidates.append(Suggestion(trimmed if trimmed.strip() else ""))
    if set(rest) <= CLOSERS and _is_subsequence(tail.replace(" ", ""), text.split("\n", 1)[0]):
        candidates.append(Suggestion(text, len(rest)))
    baseline = _scan(ctx, "", rest)
    for strict in (True, False):
        for cand in candidates:
            state = _scan(ctx, cand.text, rest[cand.replace_len :])
            if state.unmatched < 0 and state.quote == baseline.quote and (not strict or state.stack == baseline.stack):
                return cand
    return Suggestion(_balanced_prefix(text, ctx))


def _balanced_prefix(text: str, ctx: Context) -> str:
    """`text` cut before its first closer that closes nothing (and its trailing blanks)."""
    state = _scan(ctx, text, "")
    if state.unmatched < 0:
        return text
    return text[: state.unmatched].rstrip()


def _is_subsequence(needle: str, hay: str) -> bool:
    it = iter(hay)
    return all(ch in it for ch in needle)


@dataclass
class _ScanState:
    stack: list[str]
    quote: str = ""  # the open string's delimiter at the end, '' outside strings
    unmatched: int = -1  # offset in the suggestion of its first closer that closes nothing


def _scan(ctx: Context, suggestion: str, rest: str) -> _ScanState:
    """Scan brackets and quotes through the text before the cursor, the suggestion, then `rest`.

    A light lexer for any language: strings in ', " and ` (triple quotes span lines, others end
    at the line's end), comments after # (and // outside Python-looking code). Unmatched
    closers before the cursor are ignored (the window may start mid-expression); in the
    suggestion or after it they count. A closer in `rest` closing nothing marks offset
    len(suggestion).
    """
    start = max(0, ctx.cursor - BRACKET_CONTEXT_CHARS)
    before = ctx.text[start : ctx.cursor]
    nl = before.find("\n")
    if start > 0 and nl >= 0:
        before = before[nl + 1 :]
    slash_comments = not re.search(r"^\s*(def |import |from \S+ import|#)", before, re.M)
    state = _ScanState([])
    joined = before + suggestion + rest
    boundary, end_of_suggestion = len(before), len(before) + len(suggestion)
    i, n = 0, len(joined)
    while i < n:
        ch = joined[i]
        if state.quote:
            if ch == "\\":
                i += 2
                continue
            if joined.startswith(state.quote, i):
                i += len(state.quote)
                state.quote = ""
                continue
            if ch == "\n" and len(state.quote) == 1 and state.quote != "`":
                state.quote = ""
            i += 1
            continue
        if ch == "#" or (slash_comments and joined.startswith("//", i)):
            nl = joined.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if ch in "\"'`":
            state.quote = joined[i : i + 3] if joined.startswith(ch * 3, i) else ch
            i += len(state.quote)
            continue
        if ch in "([{":
            state.stack.append(ch)
        elif ch in _OPENERS:
            if state.stack and state.stack[-1] == _OPENERS[ch]:
                state.stack.pop()
            elif i >= boundary and state.unmatched < 0:
                state.unmatched = min(i, end_of_suggestion) - boundary
        i += 1
    return state
