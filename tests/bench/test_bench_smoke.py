"""A seconds-long run of the keystroke benchmark (`python -m benchmarks.keystrokes`) on a tiny model, so the benchmark cannot rot."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest
import torch

from benchmarks.keystrokes import add_arguments, markdown, replay, run, typing_session
from santa_lsp.config import Options
from santa_lsp.engine import GenerationParams, load_engine

SOURCE = '''import os


def walk(root):
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.isdir(path):
            yield from walk(path)
        else:
            yield path


def count(root):
    return sum(1 for _ in walk(root))
'''


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_typing_session_retypes_the_text():
    keys = typing_session(Path("x.py"), SOURCE, 40, random.Random(0), typo_rate=0.3)
    assert keys[-1].text == SOURCE  # typos were all backspaced
    assert any(k.key == "\b" for k in keys)
    for k in keys:
        assert 0 <= k.cursor <= len(k.text)


def test_replay_spreads_keystrokes_over_files(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(SOURCE)
    b.write_text(SOURCE.replace("walk", "scan"))
    keys = replay([a, b], 20, seed=1, typo_rate=0.0)
    assert len(keys) == 20
    assert {k.doc for k in keys} == {str(a), str(b)}


def test_exact_length_generates_every_token(tiny_model_dir):
    engine = load_engine(Options(model=str(tiny_model_dir), device="cpu"), allow_download=False).engine
    result = engine.generate([1, 2, 3], GenerationParams(max_new_tokens=7, exact_length=True))
    assert result.generated_tokens == 7 and result.stop_reason == "length"


@pytest.mark.parametrize("dtype", ["int8"])
def test_bench_smoke(tiny_model_dir, tmp_path, dtype):
    pytest.importorskip("transformers")
    src = tmp_path / "walk.py"
    src.write_text(SOURCE)
    args = _args([str(src), "--model", str(tiny_model_dir), "--dtype", dtype, "--keystrokes", "8",
                  "--max-new-tokens", "4", "--no-startup", "--probe-steps", "3", "--bandwidth-mib", "16"])
    args.argv = ["bench"]
    report = run(args, log=lambda msg: None)
    rows = {v["name"]: v for v in report["variants"]}
    assert set(rows) == {"ours", "natural", "reuse-off", "psm", "fp32", "baseline"}
    for name, row in rows.items():
        assert row["keystrokes"] == 8
        assert row["p50_ms"] > 0
    # Fixed generation lengths: every model run made exactly 4 tokens, transformers too.
    assert rows["ours"]["generated_per_run"] in (0.0, 4.0)
    assert rows["baseline"]["generated_per_run"] == 4.0
    # Reuse: with SPM, ours recomputes far less than reuse-off.
    assert rows["ours"]["computed_per_key"] < rows["reuse-off"]["computed_per_key"]
    assert rows["reuse-off"]["reused_per_key"] == 0
    assert rows["baseline"]["ratio_p50"] > 0
    engine_rows = {e["dtype"]: e for e in report["engine"]}
    assert engine_rows["int8"]["weight_mb_per_token"] < engine_rows["float32"]["weight_mb_per_token"]
    assert 0.5 < engine_rows["int8"]["top1_agreement"] <= 1.0
    text = markdown(report)
    assert "| ours |" in text and "| baseline |" in text and "floor ms/token" in text
    assert torch.get_num_threads() >= 1
