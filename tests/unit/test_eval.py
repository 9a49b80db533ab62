"""Evaluation harness: data loading, sandboxed test runs, the pipeline on every problem, the CLI."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from santa_lsp.cli import main
from santa_lsp.config import Options
from santa_lsp.errors import SantaError
from santa_lsp.eval import evaluate, load_problems, program_for, run_tests, typed_into
from santa_lsp.service import CompletionService

DATA = Path(__file__).resolve().parents[1] / "data" / "eval" / "python.jsonl"


def test_problems_load_and_their_canonical_solutions_pass():
    problems = load_problems(DATA)
    assert len(problems) >= 8
    assert {p.single_line for p in problems} == {True, False}
    for p in problems:
        passed, detail = run_tests(program_for(p, p.prompt + p.canonical_solution + p.suffix), 10)
        assert passed, (p.task_id, detail)


def test_gzip_and_plain_humaneval_records(tmp_path):
    record = {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "entry_point": "f",
              "canonical_solution": "    y = x + 1\n\n    return y\n", "test": "def check(c):\n    assert c(1) == 2\n"}
    path = tmp_path / "he.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(record) + "\n")
    holes = load_problems(path)  # no suffix: one single-line hole per non-blank solution line
    assert [h.task_id for h in holes] == ["HumanEval/0/L0", "HumanEval/0/L2"]
    assert holes[1].prompt == "def f(x):\n    y = x + 1\n\n" and holes[1].suffix == ""
    assert all(h.single_line and h.prompt + h.canonical_solution + h.suffix == record["prompt"] +
               record["canonical_solution"] for h in holes)
    [body] = load_problems(path, derive="body")
    assert body.task_id == "HumanEval/0" and body.suffix == "" and not body.single_line


def test_typed_into_puts_the_cursor_inside_the_line():
    problems = load_problems(DATA)
    p = next(p for p in problems if p.task_id == "santa/sum_list/L1")  # "        total += n\n"
    q = typed_into(p, 3)
    assert q.prompt.endswith("\n        tot") and q.canonical_solution == "al += n"
    assert q.suffix.startswith("\n    return")
    assert q.prompt + q.canonical_solution + q.suffix == p.prompt + p.canonical_solution + p.suffix
    assert run_tests(program_for(q, q.prompt + q.canonical_solution + q.suffix))[0]
    multi = next(p for p in problems if not p.single_line)
    assert typed_into(multi, 3) == multi and typed_into(p, 100) == p and typed_into(p, 0) == p


@pytest.mark.parametrize("content, message", [
    ("{not json}\n", "not JSON"),
    ('{"task_id": "x", "prompt": ""}\n', "missing field"),
    ("\n", "no problems"),
])
def test_bad_data_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(SantaError, match=message):
        load_problems(path)
    with pytest.raises(SantaError, match="no such file"):
        load_problems(tmp_path / "missing.jsonl")


def test_test_runs_are_isolated_and_limited():
    assert run_tests("assert 1 + 1 == 2\n") == (True, "")
    passed, detail = run_tests("assert 1 + 1 == 3\n")
    assert not passed and "AssertionError" in detail
    t0 = time.monotonic()
    passed, detail = run_tests("while True:\n    pass\n", timeout_s=1.0)
    assert not passed and "timed out" in detail and time.monotonic() - t0 < 5
    passed, detail = run_tests("x = bytearray(4 << 30)\n")  # beyond the address-space limit
    assert not passed and "MemoryError" in detail
    passed, _ = run_tests("import os\nassert os.getcwd().startswith(os.environ.get('TMPDIR', '/tmp')) or True\n"
                          "open('big', 'wb').write(b'x' * (8 << 20))\n")
    assert not passed  # file size limit


def oracle(scripted, problems, run_on: str) -> CompletionService:
    """A "model" that writes each hole's solution, then runs on the way FIM models do."""

    def script(prompt: str) -> str:
        p = next(p for p in problems if p.prompt[-60:] in prompt)
        return p.canonical_solution + p.suffix + run_on

    return scripted(script, max_new_tokens=256)


def test_pipeline_keeps_right_answers_and_cuts_the_run_on(scripted):
    problems = load_problems(DATA)
    on = evaluate(oracle(scripted, problems, "<|endoftext|>junk"), problems, Options(max_new_tokens=256), execute=True)
    s = on.summary()
    assert s["exact_match"] == 1.0 and s["pass_at_1"] == 1.0 and s["problems"] == len(problems)
    off = evaluate(oracle(scripted, problems, "<|endoftext|>junk"), problems, Options(max_new_tokens=256),
                   postprocessing=False, execute=True)
    assert off.summary()["pass_at_1"] == 0.0  # the raw output still holds the run-on
    assert all(r.latency_ms > 0 and r.prompt_tokens > 0 for r in on.results)


def test_cli_eval_end_to_end(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main(["eval", "--data", str(DATA), "--model", str(tiny_model_dir), "--stride", "2", "--limit", "3",
               "--max-new-tokens", "6", "--compare", "--execute", "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "exact_match" in table and "pass_at_1" in table
    runs = json.loads(out.read_text())
    assert [(r["summary"]["fim_order"], r["summary"]["postprocess"]) for r in runs] == [
        ("spm", True), ("spm", False), ("psm", True), ("psm", False)]
    assert all(len(r["results"]) == 3 and r["summary"]["pass_at_1"] is not None for r in runs)


def test_cli_eval_typed_and_single_run(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main(["eval", "--data", str(DATA), "--model", str(tiny_model_dir), "--limit", "2", "--typed", "2",
               "--max-new-tokens", "4", "--fim-order", "psm", "--no-heal", "--json", str(out)])
    assert rc == 0
    [run] = json.loads(out.read_text())
    assert run["summary"]["fim_order"] == "psm" and run["summary"]["token_healing"] is False
    assert run["summary"]["pass_at_1"] is None and run["summary"]["exact_match"] is not None


def test_cli_eval_reports_bad_input(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "none.jsonl"), "--model", "synthetic:tiny"]) == 2
    assert "no such file" in capsys.readouterr().err
