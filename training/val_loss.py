"""Validation loss of exported models on the same batches train.py validates on.

The validation split (training/data/corpus/val.jsonl) with train.py's FIM transform
(fixed seed 0, no shuffle), --val-batches batches of 4 x --seq-len tokens, in fp32 (--bf16: autocast, as train.py --bf16 validates), plus the
loss on the held-out test files (tests/data/heldout, first 512 tokens). Use it to compare
two models on one corpus: the numbers depend on the corpus build.

Usage: python3 training/val_loss.py santa_lsp/models/bundled training/runs/cont1/export
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import GPTBigCodeForCausalLM

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from train import FimPacker, evaluate, load_texts  # noqa: E402

HELDOUT = ROOT.parent / "tests" / "data" / "heldout"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="exported model directories")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "corpus")
    ap.add_argument("--val-batches", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast, as train.py --bf16 validates (default fp32)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.models:
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        packer = FimPacker(load_texts(args.data / "val.jsonl"), tok, args.seq_len, 0.5, 0.5,
                           seed=0, shuffle=False)
        batches = [packer.batch(4) for _ in range(args.val_batches)]
        model = GPTBigCodeForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
        out = {"model": str(path), "val_loss": round(evaluate(model, batches, args.bf16), 4)}
        with torch.no_grad():
            for f in sorted(HELDOUT.glob("*.*")):
                if f.suffix not in (".py", ".js", ".java"):
                    continue
                ids = torch.tensor(tok.encode(f.read_text(encoding="utf-8")).ids[:512])[None]
                out[f.name] = round(model(input_ids=ids, labels=ids).loss.item(), 3)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
