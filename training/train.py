"""Train the bundled SantaCoder-architecture model (gpt_bigcode, multi-query attention).

Objective exactly as SantaCoder (bigcode Megatron-LM permute()): per document, with
probability --fim-rate the text is split at two character positions drawn uniformly
into prefix/middle/suffix; of those FIM samples, --spm-rate are in SPM order, the rest
PSM; the remaining documents are plain left-to-right. Each part is tokenized separately.
  PSM: <fim-prefix> prefix <fim-suffix> suffix <fim-middle> middle
  SPM: <fim-prefix> <fim-suffix> suffix <fim-middle> prefix middle
Documents are joined with <|endoftext|> and packed into sequences of --seq-len tokens.

The run is time-budgeted (--max-minutes): warmup is counted in steps, the cosine decay
follows the wall clock to the end of the budget, and the run stops in time regardless.
Every --export-minutes the model is validated, checkpointed (<run-dir>/checkpoint.pt,
written atomically) and exported to --export-dir (default <run-dir>/export, never the
bundled model: replace that by hand after comparing) so that a usable model always exists.

--init-from DIR starts from an exported model (e.g. santa_lsp/models/bundled) instead of
random weights; its config decides the architecture. --resume continues the run in
--run-dir from its checkpoint: weights, optimizer, step/token counters, the data order and
the position in it, and the training seconds already spent (the schedule counts training
time across sessions; --max-minutes is the total budget of the run, and --session-minutes
caps one session).

Usage: nice -n 19 python3 training/train.py --threads 1 --max-minutes 100 --run-dir training/runs/main
       nice -n 19 python3 training/train.py --resume --run-dir training/runs/main [--max-minutes N]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from export import export  # noqa: E402


class FimPacker:
    """Streams packed [seq_len] token blocks built from documents with the FIM transform."""

    def __init__(self, texts: list[str], tok: Tokenizer, seq_len: int, fim_rate: float,
                 spm_rate: float, seed: int, shuffle: bool = True):
        self.texts, self.tok, self.seq_len = texts, tok, seq_len
        self.fim_rate, self.spm_rate = fim_rate, spm_rate
        self.rng = np.random.default_rng(seed)
        self.shuffle = shuffle
        ids = {t: tok.token_to_id(t) for t in
               ("<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>")}
        self.eot, self.pre, self.mid, self.suf = (ids["<|endoftext|>"], ids["<fim-prefix>"],
                                                  ids["<fim-middle>"], ids["<fim-suffix>"])
        self.buffer: list[int] = []
        self.epoch = 0
        self.order = self._new_order()
        self.pos = 0

    def _new_order(self) -> np.ndarray:
        n = len(self.texts)
        return self.rng.permutation(n) if self.shuffle else np.arange(n)

    def _next_docs(self, k: int) -> list[str]:
        out = []
        while len(out) < k:
            if self.pos >= len(self.order):
                self.epoch += 1
                self.order, self.pos = self._new_order(), 0
            out.append(self.texts[self.order[self.pos]])
            self.pos += 1
        return out

    def _permute(self, text: str) -> tuple[str, list[str]]:
        """Return (mode, parts) with mode in {'ltr', 'psm', 'spm'}."""
        if self.rng.random() >= self.fim_rate:
            return "ltr", [text]
        lo, hi = sorted(self.rng.integers(0, len(text) + 1, size=2))
        prefix, middle, suffix = text[:lo], text[lo:hi], text[hi:]
        mode = "spm" if self.rng.random() < self.spm_rate else "psm"
        return mode, [prefix, middle, suffix]

    def _fill(self) -> None:
        docs = self._next_docs(32)
        plans = [self._permute(d) for d in docs]
        flat = [p for _, parts in plans for p in parts]
        enc = iter(e.ids for e in self.tok.encode_batch(flat, add_special_tokens=False))
        for mode, parts in plans:
            if mode == "ltr":
                self.buffer += next(enc)
            else:
                prefix, middle, suffix = next(enc), next(enc), next(enc)
                if mode == "psm":
                    self.buffer += [self.pre, *prefix, self.suf, *suffix, self.mid, *middle]
                else:
                    self.buffer += [self.pre, self.suf, *suffix, self.mid, *prefix, *middle]
            self.buffer.append(self.eot)

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos,
                "order": torch.from_numpy(np.asarray(self.order, dtype=np.int64)),
                "buffer": torch.tensor(self.buffer, dtype=torch.int32),
                "rng": json.dumps(self.rng.bit_generator.state)}

    def load_state(self, st: dict) -> None:
        if len(st["order"]) != len(self.texts):
            print("warning: corpus changed since the checkpoint; starting a new data order",
                  flush=True)
            return
        self.epoch, self.pos = int(st["epoch"]), int(st["pos"])
        self.order = st["order"].numpy()
        self.buffer = st["buffer"].tolist()
        self.rng.bit_generator.state = json.loads(st["rng"])

    def batch(self, batch_size: int) -> torch.Tensor:
        need = batch_size * self.seq_len
        while len(self.buffer) < need:
            self._fill()
        block, self.buffer = self.buffer[:need], self.buffer[need:]
        return torch.tensor(block, dtype=torch.long).view(batch_size, self.seq_len)


def load_texts(path: Path, upsample: dict[str, float] | None = None) -> list[str]:
    """Document texts; with upsample {lang: k}, documents of that language appear k times
    (a fraction: each one extra time with that probability, fixed seed)."""
    rng = np.random.default_rng(0)
    out = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            k = (upsample or {}).get(d.get("lang"), 1.0)
            n = int(k) + (rng.random() < k - int(k))
            out += [d["text"]] * n
    return out


@torch.no_grad()
def evaluate(model, batches: list[torch.Tensor], amp: bool) -> float:
    model.eval()
    losses = []
    for x in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            losses.append(model(input_ids=x, labels=x).loss.float().item())
    model.train()
    return float(np.mean(losses))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "corpus")
    ap.add_argument("--tokenizer", type=Path, default=ROOT / "data" / "tokenizer.json")
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "main")
    ap.add_argument("--export-dir", type=Path, default=None,
                    help="default: <run-dir>/export")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="exported model directory to start from (its config wins)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from <run-dir>/checkpoint.pt")
    ap.add_argument("--session-minutes", type=float, default=0.0,
                    help="stop this session after N minutes (0: only --max-minutes)")
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-head", type=int, default=8)
    ap.add_argument("--n-inner", type=int, default=1024)
    ap.add_argument("--seq-len", type=int, default=1024, help="also the model's n_positions")
    ap.add_argument("--batch-size", type=int, default=8, help="sequences per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--fim-rate", type=float, default=0.5)
    ap.add_argument("--spm-rate", type=float, default=0.5)
    ap.add_argument("--max-minutes", type=float, default=100.0,
                    help="training-time budget of the whole run (all sessions); the "
                         "schedule is fitted to it")
    ap.add_argument("--max-steps", type=int, default=0, help="0: as many as the budget allows")
    ap.add_argument("--export-minutes", type=float, default=10.0)
    ap.add_argument("--val-batches", type=int, default=12)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (measure first)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--upsample", default="",
                    help="e.g. python=2: that language's documents count k times per epoch")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if args.export_dir is None:
        args.export_dir = args.run_dir / "export"
    ck = None
    if args.resume:
        ck_path = args.run_dir / "checkpoint.pt"
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        print(f"resuming from {ck_path}: step {ck['meta']['step']}, "
              f"{ck['meta']['tokens']:,} tokens", flush=True)
        saved = json.loads(ck["meta"]["config"])
    elif args.init_from is not None:
        saved = json.loads((args.init_from / "config.json").read_text())
    else:
        saved = None
    # training seconds already spent by earlier sessions of this run
    spent_before = float(ck["meta"].get("train_s", 0.0)) if ck else 0.0
    budget_s = args.max_minutes * 60
    deadline = t_start + max(0.0, budget_s - spent_before)
    if args.session_minutes:
        deadline = min(deadline, t_start + args.session_minutes * 60)

    tok = Tokenizer.from_file(str(args.tokenizer))
    vocab_size = math.ceil(tok.get_vocab_size() / 128) * 128
    upsample = {k: float(v) for k, v in (kv.split("=") for kv in args.upsample.split(",") if kv)}
    train = FimPacker(load_texts(args.data / "train.jsonl", upsample), tok, args.seq_len,
                      args.fim_rate, args.spm_rate, seed=args.seed)
    val_packer = FimPacker(load_texts(args.data / "val.jsonl"), tok, args.seq_len,
                           args.fim_rate, args.spm_rate, seed=0, shuffle=False)
    val_batches = [val_packer.batch(4) for _ in range(args.val_batches)]

    if saved is not None:
        saved.pop("santa_lsp_training", None)
        config = GPTBigCodeConfig(**saved)
    else:
        config = GPTBigCodeConfig(
            vocab_size=vocab_size, n_positions=args.seq_len, n_embd=args.n_embd,
            n_layer=args.n_layer, n_head=args.n_head, n_inner=args.n_inner,
            multi_query=True, activation_function="gelu_pytorch_tanh", layer_norm_epsilon=1e-5,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
            scale_attn_weights=True, initializer_range=0.02,
            bos_token_id=tok.token_to_id("<|endoftext|>"),
            eos_token_id=tok.token_to_id("<|endoftext|>"),
            pad_token_id=tok.token_to_id("<fim-pad>"))
    for k in ("attn_pdrop", "resid_pdrop", "embd_pdrop"):
        setattr(config, k, 0.0)
    # SDPA (PyTorch's fused CPU flash attention): 3x faster per step than the eager
    # bmm/softmax/mask path that a bare constructor would pick (measured, see TRAINING.md)
    config._attn_implementation = "sdpa"
    model = GPTBigCodeForCausalLM(config)
    if ck is not None:
        model.load_state_dict(ck["model"])
    elif args.init_from is not None:
        from safetensors.torch import load_file
        missing, unexpected = model.load_state_dict(
            load_file(str(args.init_from / "model.safetensors")), strict=False)
        assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
        model.tie_weights()
        print(f"initialised from {args.init_from}", flush=True)
    model.train()
    print(f"attention: {model.config._attn_implementation}, bf16 autocast: {args.bf16}",
          flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params:,} vocab {vocab_size} seq {args.seq_len}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=False)
    if ck is not None:
        opt.load_state_dict(ck["opt"])
        train.load_state(ck["packer"])

    log_path = args.run_dir / "log.csv"
    new_log = not (args.resume and log_path.exists())
    log_f = open(log_path, "w" if new_log else "a", newline="")
    log = csv.writer(log_f)
    if new_log:
        log.writerow(["step", "loss", "val_loss", "lr", "tokens", "elapsed_s", "epoch"])

    tokens_per_step = args.batch_size * args.seq_len
    total_steps = args.max_steps or 10**9  # without --max-steps the clock ends the run
    step, tokens = 0, 0
    if ck is not None:
        step, tokens = int(ck["meta"]["step"]), int(ck["meta"]["tokens"])
    step0, tokens0 = step, tokens
    next_export = time.time() + args.export_minutes * 60
    t_loop = time.time()
    val_loss = float("nan")

    def train_s(now: float) -> float:
        """Training seconds of the whole run (earlier sessions + this one)."""
        return spent_before + (now - t_start)

    def lr_at(s: int, now: float) -> float:
        """Linear warmup, then cosine decay over the step budget (--max-steps) or, by
        default, over the wall-clock budget: on a shared CPU the speed varies too much
        to fit a step count in advance, so the schedule follows the clock."""
        if s < args.warmup_steps:
            return args.lr * (s + 1) / args.warmup_steps
        if args.max_steps:
            frac = (s - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps)
        else:
            frac = train_s(now) / max(1.0, budget_s - 60)
        frac = min(1.0, max(0.0, frac))
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * frac))

    def checkpoint(final: bool) -> None:
        nonlocal val_loss
        val_loss = evaluate(model, val_batches, args.bf16)
        meta = {"step": step, "tokens": tokens, "train_loss": ema,
                "val_loss": val_loss, "elapsed_s": round(time.time() - t_start, 1),
                "train_s": round(train_s(time.time()), 1), "params": n_params,
                "final": final, "config": model.config.to_json_string(),
                "args": {k: str(v) for k, v in vars(args).items()}}
        tmp = args.run_dir / "checkpoint.pt.tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "meta": meta,
                    "packer": train.state()}, tmp)
        os.replace(tmp, args.run_dir / "checkpoint.pt")  # a kill never leaves half a file
        export(model, args.tokenizer, args.export_dir, meta)
        (args.run_dir / "summary.json").write_text(json.dumps(meta, indent=1))
        log.writerow([step, f"{ema:.4f}", f"{val_loss:.4f}", "", tokens,
                      f"{train_s(time.time()):.1f}", train.epoch])
        log_f.flush()
        print(f"checkpoint step {step} val_loss {val_loss:.4f} -> {args.export_dir}",
              flush=True)

    ema = float("nan")
    val_reserve = 0.0  # seconds a validation+export takes, measured at the first one
    if ck is not None:
        ema = float(ck["meta"].get("train_loss", float("nan")))
    while step < total_steps:
        x = train.batch(args.batch_size)
        lr = lr_at(step, time.time())
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += tokens_per_step
        li = loss.item()
        ema = li if math.isnan(ema) else 0.95 * ema + 0.05 * li
        now = time.time()
        if step % 10 == 0 or step == 1:
            log.writerow([step, f"{li:.4f}", "", f"{lr:.2e}", tokens,
                          f"{train_s(now):.1f}", train.epoch])
            log_f.flush()
            print(f"step {step} loss {li:.4f} ema {ema:.4f} lr {lr:.2e} "
                  f"tok {tokens} {(tokens - tokens0) / (now - t_loop):.0f} tok/s", flush=True)
        if now >= next_export:
            t0 = time.time()
            checkpoint(final=False)
            val_reserve = time.time() - t0
            next_export = time.time() + args.export_minutes * 60
        if time.time() + val_reserve + 5 >= deadline:
            print("time budget reached", flush=True)
            break
    checkpoint(final=True)
    log_f.close()


if __name__ == "__main__":
    main()
