"""Perfect-model replay: measure the completion pipeline with a "model" that knows the answer.

The only models that run here are small, so a pipeline bug and a weak model look alike. The
replay separates them: holes are cut out of real files (code nobody here wrote), the document
without the hole goes through `CompletionService.complete` exactly as an editor request would,
and `ReplayEngine` stands in for the model, writing the true text token by token (with the
project's tokenizer) through the same stop callback, token-healing constraint and token limit
as the real decode loop. Whatever differs from the hidden text is the pipeline's fault.

Cursor kinds (what an editor produces):
  end-of-line         typing at the end of a line: the rest of the line is hidden
  block-body          an empty, editor-indented line after a block opener: the body is hidden
  in-brackets         inside `(...)` / `[...]` with the closer present
  before-punctuation  mid-line, the hole ends right before the line's closing punctuation
  identifier-rest     the rest of an identifier, with code after it on the line
  inside-word         the middle of an identifier

How the "model" behaves after the hole (variants):
  eot          it writes the hidden text, then end-of-text
  run-on       it runs on into the rest of the file (until the token limit)
  retype       it writes the hidden text and types the rest of the line again, then stops
  extra-lines  it adds two plausible lines from elsewhere in the file, then stops (for a block,
               lines indented less than the block: they belong after it)

Scores: exact (accepting gives back the original file), short (a strict beginning of the hidden
text), long (the hidden text and more: doubled closers or rest of line), empty, wrong.

Command (from the repository root): `python -m benchmarks.replay [FILE...]` prints the table per
language x kind x variant (`--markdown`: exact share per variant, as in the README; `--failures N`:
the misses). `tests/quality/test_replay.py` runs a bounded slice in CI; the unit tests' scripted
engine is a `ReplayEngine`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from santa_lsp.config import Options, add_option_arguments, options_from_args
from santa_lsp.engine.generate import GenerationParams, GenerationResult
from santa_lsp.engine.hub import BUNDLED_DIR
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.errors import InvalidPrompt

KINDS = ("end-of-line", "block-body", "in-brackets", "before-punctuation", "identifier-rest", "inside-word")
VARIANTS = ("eot", "run-on", "retype", "extra-lines")
OUTCOMES = ("exact", "short", "long", "empty", "wrong")
LANGUAGES = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".ts": "typescript",
             ".java": "java"}
# SantaCoder's context; the replay prompts are built for the model users run.
REPLAY_POSITIONS = 2048
# Block bodies longer than this (in tokens) cannot come back whole within the default token
# limit; the replay measures the pipeline, so it leaves them out (the limit has its own tests).
MAX_BODY_TOKENS = 48
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


# -- the stand-in model -------------------------------------------------------------------------
class ReplayEngine:
    """An engine whose model writes `continuation` (then end-of-text when `eot`), token by token.

    It honours what the real decode loop honours: the token-healing prefix (`forced_text`) comes
    first, `stop` is asked after every token once that prefix is written, and generation ends at
    `max_new_tokens` or the context's end. `n_positions` is SantaCoder's, so prompts are built
    as they would be for it.
    """

    def __init__(self, tokenizer: Tokenizer, n_positions: int = REPLAY_POSITIONS) -> None:
        self.tokenizer = tokenizer
        self.n_positions = n_positions
        self.name = "replay"
        self.continuation = ""
        self.eot = True
        self.calls = 0

    def will_write(self, continuation: str, eot: bool) -> None:
        """What the next generation writes after the healed text."""
        self.continuation, self.eot = continuation, eot

    def clear_cache(self) -> None:
        pass

    def generate(self, prompt: list[int], params: GenerationParams, key: str = "", cancelled=lambda: False,
                 reuse: bool = True) -> GenerationResult:
        self.calls += 1
        room = self.n_positions - len(prompt)
        if room <= 0:
            raise InvalidPrompt(f"prompt of {len(prompt)} tokens does not fit the context of {self.n_positions}")
        tokens = self.tokenizer.encode(params.forced_text + self.continuation)
        forced = params.forced_text.encode("utf-8")
        max_new = min(params.max_new_tokens, room)
        out: list[int] = []
        reason = "eot" if self.eot else "length"
        for token in tokens:
            if len(out) == max_new:
                reason = "length" if max_new == params.max_new_tokens else "context"
                break
            if cancelled():
                reason = "cancelled"
                break
            out.append(token)
            if forced:
                piece = self.tokenizer.token_bytes(token)
                forced = forced[len(piece):] if forced.startswith(piece) else b""
            if params.stop is not None and not forced and params.stop(out):
                reason = "stop"
                break
        else:
            if not self.eot:
                reason = "length"
        return GenerationResult(out, reason, len(prompt), 0, len(prompt), 0.0, 0.0)


# -- cases ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    path: str
    language: str
    kind: str
    original: str
    start: int  # the hole is original[start:end]; the cursor is at `start` of the document
    end: int

    @property
    def document(self) -> str:
        return self.original[: self.start] + self.original[self.end :]

    @property
    def truth(self) -> str:
        return self.original[self.start : self.end]

    @property
    def line(self) -> int:
        return self.original.count("\n", 0, self.start)


def language_of(path: str | Path) -> str:
    return LANGUAGES.get(Path(path).suffix, "other")


def make_cases(text: str, path: str, per_kind: int, seed: int = 0, tokenizer: Tokenizer | None = None) -> list[Case]:
    """Up to `per_kind` holes of each kind, spread over the file (deterministic for a seed)."""
    text = text.replace("\r\n", "\n")
    language = language_of(path)
    rng = random.Random(f"{seed}:{Path(path).name}")
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    finders = {
        "end-of-line": _end_of_line, "block-body": _block_body, "in-brackets": _in_brackets,
        "before-punctuation": _before_punctuation, "identifier-rest": _identifier_rest, "inside-word": _inside_word,
    }
    cases = []
    for kind, find in finders.items():
        holes = []
        for i, line in enumerate(lines):
            if _skip_line(line):
                continue
            hole = find(lines, i, rng, language)
            if hole is None:
                continue
            a, b = starts[i] + hole[0], starts[i] + hole[1]  # offsets from the line's start
            if kind == "block-body" and tokenizer is not None and len(tokenizer.encode(text[a:b])) > MAX_BODY_TOKENS:
                continue
            if text[a:b].strip():
                holes.append((a, b))
        if len(holes) > per_kind:
            step = len(holes) / per_kind
            holes = [holes[int(k * step + rng.random() * step)] for k in range(per_kind)]
        cases += [Case(str(path), language, kind, text, a, b) for a, b in holes]
    return cases


def _skip_line(line: str) -> bool:
    """Comments and docstring text: prose, not code, and no cursor kind is about them."""
    s = line.strip()
    return not s or s.startswith(("#", "//", "*", "/*", '"""', "'''")) or len(line) > 200


def _code_span(line: str) -> tuple[int, int]:
    indent = len(line) - len(line.lstrip())
    end = len(line.rstrip())
    comment = re.search(r"\s(#|//) ", line)  # leave trailing comments out of holes
    if comment and comment.start() > indent:
        end = len(line[: comment.start()].rstrip())
    return indent, end


def _end_of_line(lines, i, rng, language):
    a, b = _code_span(lines[i])
    if b - a < 4:
        return None
    cut = rng.randint(a + 1, b - 1)
    return cut, len(lines[i].rstrip())  # a trailing comment is part of the hidden rest


def _block_body(lines, i, rng, language):
    line = lines[i]
    opener = ":" if language == "python" else "{"
    if not line.rstrip().endswith(opener) or i + 1 >= len(lines):
        return None
    base = _indent(line)
    j = i + 1
    if not lines[j].strip() or _indent(lines[j]) <= base:
        return None
    last = j
    k = j
    while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > base):
        if lines[k].strip():
            last = k
        k += 1
    if last - j > 8:
        return None
    # From after the first body line's indentation to the end of the last body line.
    start = _indent(lines[j])
    end_offset = sum(len(x) + 1 for x in lines[j : last + 1]) - 1
    first_offset = len(line) + 1
    return first_offset + start, first_offset + end_offset


def _in_brackets(lines, i, rng, language):
    line = lines[i]
    pairs = []
    stack = []
    a, b = _code_span(line)
    for k in range(a, b):
        ch = line[k]
        if ch in "([":
            stack.append(k)
        elif ch in ")]" and stack:
            o = stack.pop()
            if (line[o], ch) in (("(", ")"), ("[", "]")) and k - o > 1 and line[o + 1 : k].strip():
                pairs.append((o + 1, k))
    if not pairs:
        return None
    return rng.choice(pairs)


def _before_punctuation(lines, i, rng, language):
    line = lines[i]
    a, b = _code_span(line)
    m = re.search(r"[:;,{)\]]+$", line[a:b])
    if not m:
        return None
    end = a + m.start()
    starts = [k for k in range(a + 1, end) if line[k - 1] in " ([" and line[k] not in " "]
    if not starts:
        return None
    return rng.choice(starts), end


def _identifier_rest(lines, i, rng, language):
    line = lines[i]
    a, b = _code_span(line)
    spans = [m.span() for m in _IDENT.finditer(line, a, b)
             if m.end() - m.start() >= 3 and m.end() < b and line[m.end()] not in " \t" and _outside_strings(line, m.start())]
    if not spans:
        return None
    s, e = rng.choice(spans)
    return rng.randint(s + 1, e - 1), e


def _inside_word(lines, i, rng, language):
    line = lines[i]
    a, b = _code_span(line)
    spans = [m.span() for m in _IDENT.finditer(line, a, b) if m.end() - m.start() >= 5 and _outside_strings(line, m.start())]
    if not spans:
        return None
    s, e = rng.choice(spans)
    x = rng.randint(s + 1, e - 3)
    return x, rng.randint(x + 1, e - 1)


def _outside_strings(line: str, at: int) -> bool:
    before = line[:at]
    return before.count('"') % 2 == 0 and before.count("'") % 2 == 0 and before.count("`") % 2 == 0


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


# -- what the model writes ------------------------------------------------------------------------
def continuation(case: Case, variant: str, rng: random.Random) -> tuple[str, bool]:
    """(text written after the cursor, whether end-of-text follows) for a variant."""
    rest = case.original[case.end :]
    line_rest = rest.split("\n", 1)[0]
    if variant == "eot":
        return case.truth, True
    if variant == "run-on":
        return case.truth + rest, False
    if variant == "retype":
        return case.truth + line_rest, True
    if variant == "extra-lines":
        return case.truth + line_rest + "\n" + "\n".join(_plausible_lines(case, rng)), True
    raise ValueError(f"unknown variant {variant!r}")


def _plausible_lines(case: Case, rng: random.Random) -> list[str]:
    """Two lines of code from elsewhere in the file: for a block, indented less than it."""
    lines = case.original.split("\n")
    here = case.line
    cursor_line = lines[here]
    limit = _indent(cursor_line) if case.kind == "block-body" else None
    pool = [ln for k, ln in enumerate(lines) if abs(k - here) > 3 and ln.strip() and not _skip_line(ln)
            and (limit is None or _indent(ln) < limit)]
    if not pool:
        return []
    k = rng.randrange(len(pool))
    return pool[k : k + 2]


# -- scoring ----------------------------------------------------------------------------------------
def score(case: Case, text: str, replace_len: int) -> str:
    doc = case.document
    accepted = doc[: case.start] + text + doc[case.start + replace_len :]
    if accepted == case.original:
        return "exact"
    if not text:
        return "empty"
    if replace_len == 0 and case.truth.startswith(text):
        return "short"
    if text.startswith(case.truth):
        return "long"
    return "wrong"


@dataclass
class Outcome:
    case: Case
    variant: str
    outcome: str
    text: str
    replace_len: int
    raw: str


def run(paths: Iterable[str | Path], per_kind: int = 20, variants: Sequence[str] = VARIANTS, seed: int = 0,
        options: Options | None = None, tokenizer: Tokenizer | None = None) -> list[Outcome]:
    from santa_lsp.service import CompletionService  # the pipeline under test

    tokenizer = tokenizer or Tokenizer(BUNDLED_DIR / "tokenizer.json", "bundled")
    engine = ReplayEngine(tokenizer)
    service = CompletionService(engine, options or Options())
    results = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        for n, case in enumerate(make_cases(text, str(path), per_kind, seed, tokenizer)):
            for variant in variants:
                rng = random.Random(f"{seed}:{path}:{n}:{variant}")
                engine.will_write(*continuation(case, variant, rng))
                doc = case.document
                key = f"replay/{n}/{Path(path).name}"  # the name's extension tells the language
                got = service.complete(doc, case.start, doc=key, typeahead=False)
                service.forget(key)
                text_, replace_len = (got.text, got.replace_end - got.cursor) if got else ("", 0)
                results.append(Outcome(case, variant, score(case, text_, replace_len), text_, replace_len,
                                       got.raw if got else ""))
    return results


def table(results: Sequence[Outcome]) -> str:
    """Rows language x kind x variant, and totals per variant: percentages of each outcome."""
    groups: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for r in results:
        for key in ((r.case.language, r.case.kind, r.variant), ("all", "all", r.variant)):
            groups[key][r.outcome] += 1
    head = f"{'language':<11} {'kind':<19} {'variant':<12} {'n':>5} " + " ".join(f"{o:>6}" for o in OUTCOMES)
    rows = [head, "-" * len(head)]
    for key in sorted(groups, key=lambda k: (k[0] == "all", k[0], KINDS.index(k[1]) if k[1] in KINDS else 99,
                                             VARIANTS.index(k[2]))):
        c = groups[key]
        n = sum(c.values())
        rows.append(f"{key[0]:<11} {key[1]:<19} {key[2]:<12} {n:>5} "
                    + " ".join(f"{100 * c[o] / n:>5.1f}%" for o in OUTCOMES))
    return "\n".join(rows)


def matrix(results: Sequence[Outcome]) -> str:
    """A markdown table: language x kind rows, the exact share per variant in columns."""
    groups: dict[tuple[str, str], dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for r in results:
        groups[(r.case.language, r.case.kind)][r.variant][r.outcome == "exact"] += 1
        groups[("all", "all")][r.variant][r.outcome == "exact"] += 1
    variants = [v for v in VARIANTS if any(r.variant == v for r in results)]
    rows = ["| language | cursor kind | cases | " + " | ".join(f"exact, {v}" for v in variants) + " |",
            "| --- | --- | ---: | " + " | ".join("---:" for _ in variants) + " |"]
    for key in sorted(groups, key=lambda k: (k[0] == "all", k[0], KINDS.index(k[1]) if k[1] in KINDS else 99)):
        by_variant = groups[key]
        n = sum(by_variant[variants[0]].values())
        cells = [f"{100 * c[True] / max(1, sum(c.values())):.1f}%" for c in (by_variant[v] for v in variants)]
        rows.append(f"| {key[0]} | {key[1]} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def exact_rate(results: Sequence[Outcome], variant: str | None = None) -> float:
    chosen = [r for r in results if variant is None or r.variant == variant]
    return sum(r.outcome == "exact" for r in chosen) / max(1, len(chosen))


def default_files() -> list[Path]:
    """Real code nobody here wrote: Python's standard library, JavaScript from npm's own
    dependencies, Apache Java; each where this machine has it, else the copies in tests/data."""
    import textwrap as _tw

    stdlib = Path(_tw.__file__).parent
    files = [stdlib / name for name in ("textwrap.py", "shlex.py", "fractions.py", "heapq.py", "bisect.py")]
    data = Path(__file__).resolve().parent.parent / "tests" / "data"
    files += sorted((data / "replay").glob("*.js")) + sorted((data / "replay").glob("*.java"))
    files.append(data / "heldout" / "CalendarUtils.java")  # Apache Commons Lang, kept there once
    return [f for f in files if f.is_file()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="source files (default: the bundled replay set)")
    ap.add_argument("--per-kind", type=int, default=20, help="holes of each cursor kind per file")
    ap.add_argument("--variant", action="append", choices=VARIANTS, help="only these variants")
    ap.add_argument("--seed", type=int, default=0)
    add_option_arguments(ap, ("mode", "fim_order", "max_new_tokens"))
    ap.add_argument("--failures", type=int, default=0, metavar="N", help="print N cases that were not exact")
    ap.add_argument("--markdown", action="store_true", help="print language x kind rows, exact share per variant")
    ap.add_argument("--json", type=Path, help="write every case's outcome here")
    args = ap.parse_args(argv)
    files = args.files or default_files()
    opts = options_from_args(args)
    t0 = time.perf_counter()
    results = run(files, args.per_kind, args.variant or VARIANTS, args.seed, opts)
    print(f"files={len(files)} cases={len(results)} seconds={time.perf_counter() - t0:.1f}")
    print(matrix(results) if args.markdown else table(results))
    bad = [r for r in results if r.outcome != "exact"]
    for r in bad[: args.failures]:
        doc = r.case.document
        print(f"\n{r.outcome} {r.variant} {r.case.kind} {Path(r.case.path).name}:{r.case.line + 1}")
        line_start = doc.rfind("\n", 0, r.case.start) + 1
        line_end = doc.find("\n", r.case.start)
        print(f"  line:  {doc[line_start:r.case.start]}|{doc[r.case.start:line_end if line_end >= 0 else None]}")
        print(f"  truth: {r.case.truth!r}\n  got:   {r.text!r} (replace {r.replace_len})\n  raw:   {r.raw[:120]!r}")
    if args.json:
        args.json.write_text(json.dumps([{"path": r.case.path, "line": r.case.line + 1, "kind": r.case.kind,
                                          "variant": r.variant, "outcome": r.outcome, "truth": r.case.truth,
                                          "text": r.text, "replace_len": r.replace_len} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
