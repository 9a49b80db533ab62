"""GPU fast-path measurements in one run (issue 8): decode vs the bandwidth floor, cold prefill,
per-keystroke latency with reuse on/off, the transformers fp16 baseline, and fp16 correctness.

Run on the device machine (CUDA):   python3 benchmarks/gpu_bench.py --out results.json
CPU smoke (CI keeps it from rotting): python3 benchmarks/gpu_bench.py --device cpu --model bundled --smoke

Only the engine is imported (no LSP stack), so it runs where just torch, tokenizers,
safetensors and transformers are installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.keystrokes import (  # noqa: E402
    BaselineVariant, ServiceVariant, heldout_texts, pct, replay, top1_agreement, transformers_twin,
)
from santa_lsp.config import Options  # noqa: E402
from santa_lsp.engine import load_engine  # noqa: E402
from santa_lsp.engine.graphs import GraphedDecoder  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeat: int = 5) -> float:
    """Median seconds of `fn()` over `repeat` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bandwidth_gbs(device: torch.device, mib: int) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second)."""
    a = torch.empty(mib << 20, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    seconds = timed(lambda: b.copy_(a), device)
    return 2 * a.numel() / seconds / 1e9


def decode_ms(engine, steps: int, graphed: bool) -> float:
    """ms per decoded token (argmax and its host read included, as in the real loop)."""
    model, device = engine.model, engine.device
    cache = model.new_cache()
    model(torch.arange(16, device=device), 0, cache)
    step = GraphedDecoder(model, cache) if graphed else None

    def run() -> None:
        token = 1
        for pos in range(16, 16 + steps):
            if step is not None:
                logits = step(token, pos)
            else:
                logits = model(torch.tensor([token], device=device), pos, cache, last_only=True)[-1]
            token = int(torch.argmax(logits))

    return timed(run, device, repeat=3) / steps * 1e3


def prefill_ms(engine, tokens: int) -> float:
    model, device = engine.model, engine.device
    ids = torch.randint(0, engine.model.config.vocab_size, (tokens,), device=device)
    cache = model.new_cache()
    return timed(lambda: model(ids, 0, cache, last_only=True), device) * 1e3


def keystrokes(variant, keys, every: int = 1) -> dict:
    """p50/p95 latency and mean computed tokens of `variant` over every `every`-th keystroke."""
    samples = [variant.run(k) for k in keys[::every]]
    lat = [x.latency_ms for x in samples]
    computed = [x.computed for x in samples if not x.typeahead]
    return {"keys": len(samples), "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95),
            "mean_computed_tokens": statistics.mean(computed) if computed else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="synthetic:santacoder")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--keystrokes", type=int, default=120)
    ap.add_argument("--baseline-keystrokes", type=int, default=20)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI on a CPU")
    ap.add_argument("--file", type=Path, default=Path(json.__file__).with_name("decoder.py"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.smoke:
        args.keystrokes, args.baseline_keystrokes, args.new_tokens = 4, 2, 4
    loaded = load_engine(Options(model=args.model, device=args.device, dtype=args.dtype, cache_slots=2))
    engine = loaded.engine
    model, tok, device = engine.model, engine.tokenizer, engine.device
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bw = bandwidth_gbs(device, 64 if args.smoke else 1024)
    keys = replay([args.file], args.keystrokes, seed=0, typo_rate=0.0)
    opts = Options(max_new_tokens=args.new_tokens, mode="single-line", cache_slots=2)
    steps = 8 if args.smoke else 200
    ours = ServiceVariant("ours", "SPM, reuse on", model, tok, opts, reuse=True)
    no_reuse = ServiceVariant("reuse-off", "SPM, reuse off", model, tok, opts, reuse=False)
    baseline = BaselineVariant(transformers_twin(model), tok, opts, model.config.n_positions)
    every = max(1, len(keys) // max(1, args.baseline_keystrokes))
    r = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "model": loaded.model, "dtype": loaded.dtype,
        "params": sum(p.numel() for p in model.parameters()),
        "bandwidth_gbs": bw, "floor_ms_per_token": weight_bytes / (bw * 1e9) * 1e3,
        "decode_ms_per_token_graphed": decode_ms(engine, steps, graphed=True),
        "decode_ms_per_token_eager": decode_ms(engine, steps, graphed=False),
        "prefill_ms": {n: prefill_ms(engine, n) for n in ((64,) if args.smoke else (512, 2048))},
        "keystroke_reuse_on": keystrokes(ours, keys),
        "keystroke_reuse_off": keystrokes(no_reuse, keys),
        "baseline_transformers_generate": keystrokes(baseline, keys, every),
    }
    r["speedup_vs_baseline_p50"] = r["baseline_transformers_generate"]["p50_ms"] / r["keystroke_reuse_on"]["p50_ms"]
    # Precision: greedy top-1 of a trained model in this dtype on this device vs fp32 on the CPU.
    trained = "bundled" if args.model.startswith("synthetic:") else args.model
    ref = load_engine(Options(model=trained, device="cpu", dtype="float32")).engine.model
    test = load_engine(Options(model=trained, device=device.type, dtype=args.dtype)).engine.model
    agree, n = top1_agreement(ref, test, heldout_texts([args.file]), tok,
                              256 if args.smoke else 1024)
    r["top1_agreement_vs_cpu_fp32"] = {"agreement": agree, "tokens": n}
    print(json.dumps(r, indent=2))
    if args.out:
        args.out.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
