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

from santa_lsp.config import Options  # noqa: E402
from santa_lsp.engine import load_engine  # noqa: E402
from santa_lsp.engine.graphs import GraphedDecoder  # noqa: E402
from santa_lsp.service import CompletionService  # noqa: E402


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


def typing_session(path: Path, keystrokes: int) -> list[tuple[str, int]]:
    """(text, cursor) after each typed character of a real file's middle lines."""
    source = path.read_text()
    cut = source.find("\n", len(source) // 2) + 1
    typed = source[cut : cut + keystrokes]
    rest = source.find("\n", cut + keystrokes)  # the typed lines' remainder is not there yet
    text, cursor, states = source[:cut] + source[rest if rest >= 0 else len(source):], cut, []
    for ch in typed:
        text, cursor = text[:cursor] + ch + text[cursor:], cursor + 1
        states.append((text, cursor))
    return states


def keystroke_latency(engine, states, new_tokens: int, reuse: bool) -> dict:
    opts = Options(max_new_tokens=new_tokens, mode="single-line", cache_slots=2)
    service = CompletionService(engine, opts)
    engine.clear_cache()
    lat, computed = [], []
    for text, cursor in states:
        t0 = time.perf_counter()
        result = service.complete(text, cursor, doc="bench", reuse=reuse, typeahead=False)
        sync(engine.device)
        lat.append((time.perf_counter() - t0) * 1e3)
        if result is not None and result.generation is not None:
            computed.append(result.generation.computed_tokens)
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2], "p95_ms": lat[int(len(lat) * 0.95)],
            "mean_computed_tokens": statistics.mean(computed) if computed else 0.0}


def transformers_baseline(engine, states, new_tokens: int) -> dict:
    """transformers `generate` on the full PSM prompt at every keystroke (the model card's usage)."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    c = engine.model.config
    config = GPTBigCodeConfig(vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd,
                              n_layer=c.n_layer, n_head=c.n_head, n_inner=c.n_inner, multi_query=True,
                              activation_function="gelu_pytorch_tanh", layer_norm_epsilon=c.layer_norm_epsilon)
    hf = GPTBigCodeForCausalLM(config).to(device=engine.device, dtype=engine.dtype).eval()
    state = {f"transformer.{k}": v for k, v in engine.model.state_dict().items()}
    state["lm_head.weight"] = engine.model.wte.weight
    hf.load_state_dict(state, strict=False)
    tok = engine.tokenizer
    lat = []
    for text, cursor in states:
        prompt = ([tok.ids["<fim-prefix>"]] + tok.encode(text[max(0, cursor - 3000):cursor]) + [tok.ids["<fim-suffix>"]]
                  + tok.encode(text[cursor:cursor + 1000]) + [tok.ids["<fim-middle>"]])[-(c.n_positions - new_tokens):]
        ids = torch.tensor([prompt], device=engine.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                        pad_token_id=tok.eot_id)
        sync(engine.device)
        lat.append((time.perf_counter() - t0) * 1e3)
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2], "p95_ms": lat[int(len(lat) * 0.95)]}


def agreement(model: str, device: torch.device, dtype: str, prompts: list[str], new_tokens: int) -> dict:
    """Greedy tokens of a trained model in `dtype` on `device` vs fp32 on the CPU."""
    ref = load_engine(Options(model=model, device="cpu", dtype="float32")).engine
    test = load_engine(Options(model=model, device=device.type, dtype=dtype)).engine
    same = total = 0
    for text in prompts:
        ids = ref.tokenizer.encode(text)[-200:]
        a = _greedy(ref, ids, new_tokens)
        b = _greedy(test, ids, new_tokens)
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
        same, total = same + n, total + len(a)
    return {"prefix_agreement": same / max(1, total), "prompts": len(prompts)}


def _greedy(engine, ids: list[int], n: int) -> list[int]:
    cache = engine.model.new_cache()
    logits = engine.model(torch.tensor(ids, device=engine.device), 0, cache, last_only=True)[-1]
    out = []
    for i in range(n):
        out.append(int(torch.argmax(logits)))
        logits = engine.model(torch.tensor(out[-1:], device=engine.device), len(ids) + i, cache, last_only=True)[-1]
    return out


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
    device = engine.device
    weight_bytes = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    bw = bandwidth_gbs(device, 64 if args.smoke else 1024)
    states = typing_session(args.file, args.keystrokes)
    steps = 8 if args.smoke else 200
    r = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "model": loaded.model, "dtype": loaded.dtype,
        "params": sum(p.numel() for p in engine.model.parameters()),
        "bandwidth_gbs": bw, "floor_ms_per_token": weight_bytes / (bw * 1e9) * 1e3,
        "decode_ms_per_token_graphed": decode_ms(engine, steps, graphed=True),
        "decode_ms_per_token_eager": decode_ms(engine, steps, graphed=False),
        "prefill_ms": {n: prefill_ms(engine, n) for n in ((64,) if args.smoke else (512, 2048))},
        "keystroke_reuse_on": keystroke_latency(engine, states, args.new_tokens, reuse=True),
        "keystroke_reuse_off": keystroke_latency(engine, states, args.new_tokens, reuse=False),
        "baseline_transformers_generate": transformers_baseline(engine, states[: args.baseline_keystrokes],
                                                                args.new_tokens),
    }
    r["speedup_vs_baseline_p50"] = r["baseline_transformers_generate"]["p50_ms"] / r["keystroke_reuse_on"]["p50_ms"]
    prompts = [s[0][max(0, s[1] - 800):s[1]] for s in states[:: max(1, len(states) // 8)]]
    trained = "bundled" if args.model.startswith("synthetic:") else args.model
    r["fp_agreement_vs_cpu_fp32"] = agreement(trained, device, args.dtype, prompts, args.new_tokens)
    print(json.dumps(r, indent=2))
    if args.out:
        args.out.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
