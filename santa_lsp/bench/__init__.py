"""`santa-lsp bench`: the keystroke-replay benchmark (see `core` for what it measures).

Only argument parsing lives here, so that building the CLI does not import torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_MODULES = ("textwrap", "shlex", "json.decoder")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help=f"source files to re-type (default: stdlib {', '.join(DEFAULT_MODULES)})")
    p.add_argument("--model", default="bundled", help="model to measure (default: %(default)s)")
    p.add_argument("--dtype", default="auto", help="dtype of `ours` (auto, float32, bfloat16, int8)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: santa-lsp's policy)")
    p.add_argument("--keystrokes", type=int, default=300, help="keystrokes in all (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per model run, exactly")
    p.add_argument("--mode", default="single-line", choices=("auto", "single-line", "multi-line"))
    p.add_argument("--context-budget", type=int, default=0, help="prompt tokens (0: the model's context)")
    p.add_argument("--variants", default="ours,natural,reuse-off,psm,fp32,baseline",
                   help="comma-separated, from ours, natural (stop rules on), reuse-off, psm, fp32, baseline "
                        "(default: %(default)s)")
    p.add_argument("--slow-every", type=int, default=1, help="run reuse-off and baseline on every n-th keystroke only")
    p.add_argument("--typo-rate", type=float, default=0.03, help="share of characters preceded by a typo + backspace")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-steps", type=int, default=16, help="decode steps in the engine probe")
    p.add_argument("--probe-dtypes", default="", help="more dtypes for the engine probe, e.g. bfloat16,int8")
    p.add_argument("--agreement-tokens", type=int, default=1024, help="tokens per held-out file for top-1 agreement")
    p.add_argument("--no-agreement", action="store_true")
    p.add_argument("--bandwidth-mib", type=int, default=1024)
    p.add_argument("--no-startup", action="store_true", help="skip the fresh-process start-up probe")
    p.add_argument("--endpoint", default="", metavar="URL",
                   help="also replay through this OpenAI-compatible server (vLLM serving the same model): "
                        "variants remote (SPM) and remote-psm, with its prefix-cache hits from /metrics")
    p.add_argument("--served-model", default="", help="the model's name on --endpoint (default: --model)")
    p.add_argument("--lsp", action="store_true", help="also measure through `santa-lsp serve --stdio`")
    p.add_argument("--lsp-keystrokes", type=int, default=60)
    p.add_argument("--out", type=Path, help="write the markdown table here")
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--progress", action="store_true", help="progress on stderr")


def main(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from santa_lsp.bench.core import markdown, run

    report = run(args, log)
    text = markdown(report)
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0
