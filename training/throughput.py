"""Measure training throughput (tokens/s) of a gpt_bigcode model on this CPU.

Times full training steps (forward, backward, AdamW) on random token ids, fp32 and bf16
autocast, alternating the two in rounds so that a change in the machine's load hits both.
The architecture comes from --config (an exported config.json, default the bundled model)
or from --n-embd/--n-layer/--n-inner.

Usage: nice -n 19 python3 training/throughput.py --threads 1 --steps 12 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

ROOT = Path(__file__).resolve().parent
BUNDLED = ROOT.parent / "santa_lsp" / "models" / "bundled" / "config.json"


def make_model(args) -> GPTBigCodeForCausalLM:
    cfg = json.loads(args.config.read_text())
    cfg.pop("santa_lsp_training", None)
    for k in ("n_embd", "n_layer", "n_inner", "n_head"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    cfg["n_positions"] = max(cfg["n_positions"], args.seq_len)
    config = GPTBigCodeConfig(**cfg)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return GPTBigCodeForCausalLM(config).train()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=BUNDLED)
    ap.add_argument("--n-embd", type=int)
    ap.add_argument("--n-layer", type=int)
    ap.add_argument("--n-inner", type=int)
    ap.add_argument("--n-head", type=int)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per round and mode")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = make_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    vocab = model.config.vocab_size
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for mode in ("fp32", "bf16"):
            for i in range(args.steps + 1):  # the first step of each block is a warm-up
                x = torch.randint(5, vocab, (args.batch_size, args.seq_len))
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    loss = model(input_ids=x, labels=x).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if i:
                    times[mode].append(time.perf_counter() - t0)
    tokens = args.batch_size * args.seq_len
    out = {"params": n_params, "threads": args.threads, "tokens_per_step": tokens}
    for mode, ts in times.items():
        med = statistics.median(ts)
        out[mode] = {"steps": len(ts), "median_s": round(med, 3),
                     "tokens_per_s": round(tokens / med), "min_s": round(min(ts), 3)}
    out["bf16_speedup"] = round(out["fp32"]["median_s"] / out["bf16"]["median_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
