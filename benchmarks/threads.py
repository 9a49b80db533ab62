"""Thread count x OpenMP wait policy for one decode step, in fresh processes (the policy is read
when torch loads), 1 and 2 threads interleaved inside each process.

    python benchmarks/threads.py --model /tmp/santacoder-synth --dtype int8 [--rounds 3] [--json out.json]

Prints one markdown table: decode ms/token (median of all steps) per policy and thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("PASSIVE", "ACTIVE", "unset")

CHILD = r"""
import json, os, statistics, sys, time
import torch
from santa_lsp.config import Options
from santa_lsp.engine import load_engine
args = json.loads(sys.argv[1])
model = load_engine(Options(model=args["model"], device="cpu", dtype=args["dtype"]), allow_download=False).engine.model
cache = model.new_cache(64 + args["rounds"] * len(args["threads"]) * (args["steps"] + 1) + 1)
ids = torch.randint(0, 1000, (cache.max_len,))
model(ids[:64], 0, cache)
pos, out = 64, {str(t): [] for t in args["threads"]}
for _ in range(args["rounds"]):
    for t in args["threads"]:
        torch.set_num_threads(t)
        model(ids[pos:pos + 1], pos, cache); pos += 1  # warm-up after the switch
        for _ in range(args["steps"]):
            t0 = time.perf_counter(); model(ids[pos:pos + 1], pos, cache); pos += 1
            out[str(t)].append((time.perf_counter() - t0) * 1e3)
print(json.dumps(out))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1, help="runs of the policy cycle (interleaved)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    payload = json.dumps({"model": a.model, "dtype": a.dtype, "threads": threads, "rounds": a.rounds, "steps": a.steps})
    results: dict[str, dict[str, list[float]]] = {pol: {str(t): [] for t in threads} for pol in POLICIES}
    loads = []
    for _ in range(a.repeats):
        for pol in POLICIES:
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if pol != "unset":
                env["OMP_WAIT_POLICY"] = pol
            env["PYTHONPATH"] = str(ROOT)
            loads.append(os.getloadavg()[0])
            # -c with `import torch` first: santa_lsp's own default must not mask "unset".
            proc = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            for t, v in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                results[pol][t] += v
    print(f"model `{a.model}`, dtype `{a.dtype}`; 1-min load average during the runs: "
          f"{min(loads):.1f}-{max(loads):.1f}\n")
    print("| OMP_WAIT_POLICY | " + " | ".join(f"{t} thread(s): median ms/token (p10)" for t in threads) + " |")
    print("|---|" + "---|" * len(threads))
    for pol in POLICIES:
        cells = []
        for t in threads:
            v = sorted(results[pol][str(t)])
            cells.append(f"{statistics.median(v):.1f} ({v[len(v) // 10]:.1f})")
        print(f"| {pol} | " + " | ".join(cells) + " |")
    if a.json:
        a.json.write_text(json.dumps({"results": results, "loadavg": loads}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
