"""Start `santa-lsp serve` with faults injected into the model's forward pass, on demand.

This is fault injection, declared as such: out-of-memory cannot be produced honestly on a
shared CI machine (a real allocation failure would hit the other processes first), so the
forward pass of a real, working model is wrapped here. While the file named by
SANTA_FAULT_FLAG holds `cuda-oom`, `memory` or `runtime`, every forward pass raises
torch.OutOfMemoryError, MemoryError or RuntimeError; otherwise the model runs normally.
Usage: python inject_faults.py serve --stdio
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from santa_lsp.engine import model as model_module

FLAG = Path(os.environ["SANTA_FAULT_FLAG"])
_forward = model_module.GPTBigCode.forward


def forward(self, *args, **kwargs):
    kind = FLAG.read_text().strip() if FLAG.exists() else ""
    if kind == "cuda-oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
    if kind == "memory":
        raise MemoryError("injected by the test")
    if kind == "runtime":
        raise RuntimeError("a kernel failed (injected by the test)")
    return _forward(self, *args, **kwargs)


model_module.GPTBigCode.forward = forward

if __name__ == "__main__":
    from santa_lsp.cli import main

    sys.exit(main(sys.argv[1:]))
