"""Completion quality on HumanEval-infilling-format problems, through the server's pipeline.

Each problem is a document `prompt + suffix` with the cursor at the hole between them; it
goes through `CompletionService.complete` exactly as an editor request would (context ->
prompt -> engine -> post-processing), and the suggestion is compared with the hole's
canonical solution:

- exact match (single-line holes): the stripped first line of the suggestion equals the
  stripped canonical line (the metric of the SantaCoder model card);
- pass@1 (with `execute=True`): the document with the suggestion accepted, followed by the
  problem's `test` and `check(entry_point)`, runs in a subprocess under a timeout and resource
  limits (CPU time, address space, file size, open files; no network isolation, so only run
  problems you trust);
- mean latency and the prompt tokens whose KV cache was reused.

Records without a `suffix` (plain HumanEval: prompt, canonical_solution, test, entry_point)
become infilling problems: with `derive="lines"`, one single-line hole per non-blank line of
the canonical solution, the way HumanEval-SingleLineInfilling was built (1033 holes from
HumanEval's 164 problems); with `derive="body"`, the whole solution is one multi-line hole.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from santa_lsp.config import Options
from santa_lsp.errors import SantaError
from santa_lsp.service import CompletionService
from santa_lsp.stats import percentile

log = logging.getLogger(__name__)

FIELDS = ("task_id", "prompt", "suffix", "canonical_solution", "test", "entry_point")
# Progress is logged every this many problems.
PROGRESS_EVERY = 50
# Limits for running a problem's tests.
DEFAULT_TIMEOUT_S = 10.0
MEMORY_LIMIT_BYTES = 1 << 30
FILE_SIZE_LIMIT_BYTES = 1 << 20
OPEN_FILES_LIMIT = 64


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # text before the hole
    suffix: str  # text after the hole
    canonical_solution: str  # the hole
    test: str  # defines check(candidate)
    entry_point: str

    @property
    def single_line(self) -> bool:
        return "\n" not in self.canonical_solution.strip("\n")


@dataclass
class ProblemResult:
    task_id: str
    single_line: bool
    mode: str
    completion: str  # the suggestion as the editor would insert it
    replace_len: int
    exact: bool | None  # None for multi-line holes
    passed: bool | None  # None without execution
    latency_ms: float
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    detail: str = ""  # why the tests failed


@dataclass
class Report:
    settings: dict
    results: list[ProblemResult] = field(default_factory=list)

    def summary(self) -> dict:
        rs = self.results
        single = [r for r in rs if r.exact is not None]
        executed = [r for r in rs if r.passed is not None]
        latencies = [r.latency_ms for r in rs]
        prompt_tokens = sum(r.prompt_tokens for r in rs)
        return {
            **self.settings,
            "problems": len(rs),
            "single_line_problems": len(single),
            "exact_match": _ratio(sum(r.exact for r in single), len(single)),
            "pass_at_1": _ratio(sum(r.passed for r in executed), len(executed)) if executed else None,
            "empty": _ratio(sum(not r.completion.strip() for r in rs), len(rs)),
            "mean_latency_ms": round(statistics.fmean(latencies), 1) if rs else None,
            "p90_latency_ms": round(percentile(latencies, 90), 1) if rs else None,
            "prompt_tokens": prompt_tokens,
            "reused_tokens": sum(r.reused_tokens for r in rs),
            "reused_share": _ratio(sum(r.reused_tokens for r in rs), prompt_tokens),
            "mean_generated_tokens": round(statistics.fmean(r.generated_tokens for r in rs), 1) if rs else None,
        }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


# -- data ------------------------------------------------------------------------------------
DERIVE = ("lines", "body")


def load_problems(path: Path, derive: str = "lines") -> list[Problem]:
    """Problems from a .jsonl or .jsonl.gz file (see the module docstring for the fields)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise SantaError(f"{path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise SantaError(f"cannot read {path}: {err}") from None
    problems: list[Problem] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SantaError(f"{path}:{n}: not JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise SantaError(f"{path}:{n}: expected an object")
        if "suffix" not in record:
            record = {**record, "suffix": None}
        missing = [k for k in FIELDS if k not in record]
        if missing:
            raise SantaError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
        problem = Problem(**{k: record[k] for k in FIELDS})
        if problem.suffix is not None:
            problems.append(problem)
        elif derive == "body":
            problems.append(dataclasses.replace(problem, suffix=""))
        else:
            problems.extend(single_line_holes(problem))
    if not problems:
        raise SantaError(f"{path} holds no problems")
    return problems


def typed_into(problem: Problem, chars: int) -> Problem:
    """The problem after the user typed the first `chars` characters of a single-line hole
    (after its indentation): the cursor sits inside the line, often inside a word, which is
    where token healing matters. Multi-line holes and shorter lines are left as they are."""
    hole = problem.canonical_solution
    if chars <= 0 or not problem.single_line:
        return problem
    line = hole.rstrip("\n")
    start = len(line) - len(line.lstrip())
    cut = start + chars
    if cut >= len(line):
        return problem
    suffix = hole[len(line) :] + problem.suffix if hole.endswith("\n") else problem.suffix
    return dataclasses.replace(problem, prompt=problem.prompt + line[:cut], canonical_solution=line[cut:],
                               suffix=suffix)


def single_line_holes(problem: Problem) -> list[Problem]:
    """One single-line infilling problem per non-blank line of a plain HumanEval solution."""
    lines = problem.canonical_solution.splitlines(keepends=True)
    holes = []
    for i, line in enumerate(lines):
        if line.strip():
            holes.append(dataclasses.replace(
                problem, task_id=f"{problem.task_id}/L{i}", prompt=problem.prompt + "".join(lines[:i]),
                suffix="".join(lines[i + 1 :]), canonical_solution=line,
            ))
    return holes


# -- running ---------------------------------------------------------------------------------
def evaluate(
    service: CompletionService,
    problems: Iterable[Problem],
    options: Options,
    mode: str = "task",
    postprocessing: bool = True,
    execute: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[ProblemResult], None] | None = None,
) -> Report:
    """Run every problem through `service`; `mode` "task" asks for the hole's shape (single-
    or multi-line), any other value is the completion mode option itself."""
    report = Report({"model": service.engine.name, "fim_order": options.fim_order, "postprocess": postprocessing,
                     "token_healing": options.token_healing, "mode": mode,
                     "max_new_tokens": options.max_new_tokens})
    problems = list(problems)
    for n, problem in enumerate(problems, 1):
        if n % PROGRESS_EVERY == 0:
            log.info("eval %s post-processing %s: %d/%d", options.fim_order, "on" if postprocessing else "off", n,
                     len(problems))
        shape = ("single-line" if problem.single_line else "multi-line") if mode == "task" else mode
        opts = dataclasses.replace(options, mode=shape)
        text, cursor = problem.prompt + problem.suffix, len(problem.prompt)
        result = service.complete(text, cursor, doc=problem.task_id, options=opts, postprocessing=postprocessing,
                                  typeahead=False)
        service.forget(problem.task_id)
        completion = result.text if result is not None else ""
        replace_end = result.replace_end if result is not None else cursor
        gen = result.generation if result is not None else None
        exact = None
        if problem.single_line:
            exact = _first_line(completion).strip() == problem.canonical_solution.strip()
        passed, detail = None, ""
        if execute:
            filled = text[:cursor] + completion + text[replace_end:]
            passed, detail = run_tests(program_for(problem, filled), timeout_s)
        r = ProblemResult(
            problem.task_id, problem.single_line, result.mode if result else shape, completion,
            replace_end - cursor, exact, passed,
            result.timings_ms.get("total", 0.0) if result is not None else 0.0,
            gen.prompt_tokens if gen else 0, gen.reused_tokens if gen else 0, gen.generated_tokens if gen else 0,
            detail,
        )
        report.results.append(r)
        if progress is not None:
            progress(r)
    return report


def _first_line(text: str) -> str:
    return text.lstrip("\n").split("\n", 1)[0]


def program_for(problem: Problem, filled: str) -> str:
    """The document with the suggestion accepted, then the problem's tests."""
    return f"{filled}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def run_tests(program: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[bool, str]:
    """Run `program` in a fresh, isolated Python under limits; (passed, why not)."""
    with tempfile.TemporaryDirectory(prefix="santa-eval-") as tmp:
        path = Path(tmp) / "problem.py"
        path.write_text(program, encoding="utf-8")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", str(path)], cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env={"PATH": os.defpath, "PYTHONHASHSEED": "0"},
                preexec_fn=lambda: _limit_resources(timeout_s), start_new_session=True,
            )
        except OSError as err:
            return False, f"cannot start python: {err}"
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return False, f"timed out after {timeout_s:g}s"
        _kill_group(proc)  # whatever it forked and left running (with its pipes closed) goes too
        if proc.returncode == 0:
            return True, ""
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return False, lines[-1][:200] if lines else f"exit status {proc.returncode}"


def _limit_resources(timeout_s: float) -> None:
    """In the child before exec: CPU seconds, memory, file sizes, open files, no core dumps."""
    cpu = int(timeout_s) + 1
    for limit, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, MEMORY_LIMIT_BYTES),
                         (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT_BYTES), (resource.RLIMIT_NOFILE, OPEN_FILES_LIMIT),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def format_summary(rows: list[dict]) -> str:
    """A plain-text table, one row per run."""
    cols = ["fim_order", "postprocess", "token_healing", "problems", "exact_match", "pass_at_1", "empty",
            "mean_latency_ms", "p90_latency_ms", "reused_share", "mean_generated_tokens"]
    table = [cols] + [["-" if row.get(c) is None else str(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table)
