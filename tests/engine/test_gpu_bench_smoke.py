"""The GPU benchmark script runs end to end (on the CPU, tiny sizes) so it cannot rot.

The GPU itself is not available on CI machines; the real run is documented in
benchmarks/RESULTS.md and needs the device machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_smoke_on_cpu(tiny_model_dir, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--model", str(tiny_model_dir),
         "--device", "cpu", "--dtype", "float32", "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["decode_ms_per_token_graphed"] > 0 and r["floor_ms_per_token"] > 0
    # Typing appends in SPM order: reuse computes far fewer tokens than recomputing.
    assert r["keystroke_reuse_on"]["mean_computed_tokens"] < r["keystroke_reuse_off"]["mean_computed_tokens"]
    assert r["top1_agreement_vs_cpu_fp32"]["agreement"] == 1.0  # same device and dtype
