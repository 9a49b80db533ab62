"""Print greedy fill-in-the-middle completions (PSM and SPM) from an exported model.

The same prefix is completed with two different suffixes, to show that the model reads
the suffix. Uses transformers only, so it works without the rest of santa_lsp.

Usage: python3 training/sample.py [--model santa_lsp/models/bundled] [--max-new-tokens 24]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import GPTBigCodeForCausalLM

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = ROOT.parent / "santa_lsp" / "models" / "bundled"

EXAMPLES = [
    # (prefix, suffix): the same prefix with different suffixes
    ("def add(a, b):\n    return ", "\n\n\ndef sub(a, b):\n    return a - b\n"),
    ("def mul(a, b):\n    return ", "\n\n\ndef sub(a, b):\n    return a - b\n"),
    ("import os\n\n\ndef read_file(path):\n    with open(path) as f:\n        ",
     "\n\n\nif __name__ == \"__main__\":\n    print(read_file(\"a.txt\"))\n"),
    ("function isEven(n) {\n  return ", ";\n}\n\nmodule.exports = isEven;\n"),
    ("public class Point {\n    private final int x;\n    private final int y;\n\n"
     "    public int getX() {\n        return ", "\n    }\n}\n"),
]


def fim_prompt(tok: Tokenizer, prefix: str, suffix: str, order: str) -> list[int]:
    pre, mid, suf = (tok.token_to_id(t) for t in ("<fim-prefix>", "<fim-middle>", "<fim-suffix>"))
    p = tok.encode(prefix, add_special_tokens=False).ids
    s = tok.encode(suffix, add_special_tokens=False).ids
    if order == "psm":
        return [pre, *p, suf, *s, mid]
    return [pre, suf, *s, mid, *p]  # SPM: the prefix comes last, right before the middle


def complete(model, tok: Tokenizer, prefix: str, suffix: str, order: str, n: int) -> str:
    ids = torch.tensor([fim_prompt(tok, prefix, suffix, order)])
    eot = tok.token_to_id("<|endoftext|>")
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, eos_token_id=eot,
                             pad_token_id=tok.token_to_id("<fim-pad>"))
    return tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = GPTBigCodeForCausalLM.from_pretrained(args.model).eval()
    tok = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    for prefix, suffix in EXAMPLES:
        for order in ("psm", "spm"):
            middle = complete(model, tok, prefix, suffix, order, args.max_new_tokens)
            print(f"--- {order.upper()} ---")
            print(f"{prefix}\u2039{middle}\u203a{suffix}")
    print("(\u2039 \u203a mark the generated middle)")


if __name__ == "__main__":
    main()
