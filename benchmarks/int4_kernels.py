"""Low-bit matmuls at batch 1 on the 1.1B SantaCoder shapes (issue 16): ms per layer shape and the
projected ms per decode token (24 layers x 4 matmuls + the lm_head), kernels interleaved round by
round so that all see the same machine load.

    python benchmarks/int4_kernels.py [--threads 2] [--rounds 15] [--kernels int8-fbgemm,int4-torch,...]
    python benchmarks/int4_kernels.py --agreement [--model bundled]   # top-1 agreement with fp32
    python benchmarks/int4_kernels.py --step [--model /tmp/santacoder-synth]  # whole int4 steps: fused vs torch path

Kernels: int8-fbgemm (dynamic quantization, the `int8` dtype), int8-wo (torch's bf16 x int8
weight-only `_weight_int8pack_mm`), int4-torch (`_weight_int4pack_mm_for_cpu`, bf16 activations,
group 64: the `int4` dtype before this issue; int4-torch-g32 / -g128 other group sizes), int4-native
(santa_lsp.engine.kernels: int8 activations x 4-bit weights, VNNI). Also prints the bandwidth floor
(weight bytes / the bandwidth of an fp32 GEMV).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from santa_lsp.engine import kernels

# (name, out_features N, in_features K, how many per token)
SHAPES = [("c_attn", 2304, 2048, 24), ("attn.c_proj", 2048, 2048, 24), ("c_fc", 8192, 2048, 24),
          ("mlp.c_proj", 2048, 8192, 24), ("lm_head", 49280, 2048, 1)]


def make_int8_fbgemm(w: torch.Tensor):
    scale = (w.abs().amax(dim=1).clamp(min=1e-8) / 127.0).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qw = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, None)
    return lambda x: torch.ops.quantized.linear_dynamic(x, packed, False), w.numel()


def make_int8_wo(w: torch.Tensor):
    scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
    s = scale.to(torch.bfloat16)
    return lambda x: torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), q, s).float(), w.numel()


def make_int4_torch(w: torch.Tensor, group: int = 64):
    n, k = w.shape
    g = w.reshape(n, k // group, group)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-8) / 15
    q = ((g - lo) / scale).round_().clamp_(0, 15).to(torch.int32).reshape(n, k)
    sz = torch.stack([scale.squeeze(-1).t(), (lo + 8 * scale).squeeze(-1).t()], -1).to(torch.bfloat16).contiguous()
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
    return (lambda x: torch._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), packed, group, sz).float(),
            w.numel() // 2 + sz.numel() * 2)


def make_int4_native(w: torch.Tensor):
    q, s, m = kernels.quantize_int4(w)
    p = kernels.pack_native(q)
    return lambda x: kernels.native_mm(x, p, s, m, None), p.numel() + 4 * s.numel()


MAKERS = {"int8-fbgemm": make_int8_fbgemm, "int8-wo": make_int8_wo, "int4-torch": make_int4_torch,
          "int4-torch-g32": lambda w: make_int4_torch(w, 32), "int4-torch-g128": lambda w: make_int4_torch(w, 128),
          "int4-native": make_int4_native}


def bandwidth_gbs(threads: int) -> float:
    """Effective read bandwidth of an fp32 GEMV over 512 MiB (MKL streams it at the memory's
    speed): the floor's denominator."""
    w = torch.randn(32768, 4096)
    x = torch.randn(4096)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mv(w, x)
        best = min(best, time.perf_counter() - t)
    return w.numel() * 4 / best / 1e9


def agreement(model_name: str, max_tokens: int = 1024) -> None:
    """Teacher-forced top-1 agreement with fp32 of the CPU dtypes, over the held-out files and a
    few standard-library modules (as benchmarks/NOTES.md measured it before)."""
    import copy
    from pathlib import Path

    from santa_lsp.engine.load import _load
    from santa_lsp.engine.quantize import prepare_for_cpu

    ref, tok, _, _ = _load(model_name, None, False, None)
    ref.eval()
    root = Path(__file__).resolve().parent.parent
    stdlib = Path(os.__file__).parent
    paths = sorted(p for p in (root / "tests" / "data" / "heldout").iterdir() if p.suffix in (".py", ".java", ".js"))
    paths += [stdlib / name for name in ("textwrap.py", "shlex.py", "bisect.py", "fnmatch.py")]
    texts = [p.read_text(encoding="utf-8") for p in paths]
    n_ctx = min(max_tokens, ref.config.n_positions)
    variants = {}
    for name, kind, native in (("int8", "int8", "1"), ("int4-torch", "int4", "0"), ("int4-native", "int4", "1")):
        os.environ["SANTA_LSP_NATIVE_KERNELS"] = native
        variants[name] = prepare_for_cpu(copy.deepcopy(ref), kind)
    os.environ.pop("SANTA_LSP_NATIVE_KERNELS", None)
    stepwise = variants["int4-native"].decode_blocks is not None  # the fused decode step (engine/fused.py)
    hits = {name: 0 for name in [*variants, *(["int4-native, token by token"] if stepwise else [])]}
    total = 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor(tok.encode(text)[:n_ctx])
            want = ref(ids, 0, ref.new_cache()).argmax(-1)
            total += len(ids)
            for name, model in variants.items():
                hits[name] += int((model(ids, 0, model.new_cache()).argmax(-1) == want).sum())
            if stepwise:  # as decoding runs it: one token per step, through the fused step
                model, cache = variants["int4-native"], variants["int4-native"].new_cache()
                got = torch.cat([model(ids[i:i + 1], i, cache).argmax(-1) for i in range(len(ids))])
                hits["int4-native, token by token"] += int((got == want).sum())
    print(f"top-1 agreement with fp32, {model_name}, {total} tokens ({len(texts)} files): "
          + ", ".join(f"{name} {100 * h / total:.1f}%" for name, h in hits.items()))


def steps(model_name: str, rounds: int, threads: int) -> None:
    """Whole int4 decode steps of `model_name` (engine/fused.py's one native call against the
    torch path around the same kernel), interleaved round by round in one process, at 16 and
    1,000 cached tokens, for 1 token (a decode step) and 4 (a keystroke's new tokens or a
    speculative verification)."""
    from santa_lsp.config import Options
    from santa_lsp.engine import load_engine

    model = load_engine(Options(model=model_name, dtype="int4", threads=threads), allow_download=False).engine.model
    fused_step = model.decode_blocks
    if fused_step is None:
        print("no fused step on this machine (no native int4 kernel): nothing to compare")
        return
    context = min(1000, model.config.n_positions - 64)
    cache = model.new_cache()
    ids = torch.randint(5, model.config.vocab_size, (context,), generator=torch.Generator().manual_seed(0))
    variants = [(f"{path} {t} token{'s' if t > 1 else ''} @{at}", path, t, at)
                for at in (16, context) for t in (1, 4) for path in ("fused", "torch")]
    times: dict[str, list[float]] = {v[0]: [] for v in variants}
    with torch.inference_mode():
        model(ids, 0, cache, last_only=True)
        for _ in range(rounds):
            for label, path, t, at in variants:
                model.decode_blocks = fused_step if path == "fused" else None
                start = time.perf_counter()
                for i in range(8):
                    model(ids[:t], at + i * t, cache)
                times[label].append((time.perf_counter() - start) / 8 * 1e3)
    model.decode_blocks = fused_step
    print(f"{model_name}, int4, threads={threads}, load_average={os.getloadavg()[0]:.2f}, "
          f"median of {rounds} rounds of 8 steps, ms per step:")
    for label, _path, t, at in variants[::2]:
        fused_ms = statistics.median(times[label])
        torch_ms = statistics.median(times[label.replace("fused", "torch")])
        print(f"  {t} token{'s' if t > 1 else ' '} at {at:>4} cached: fused {fused_ms:6.1f}  torch path "
              f"{torch_ms:6.1f}  ({torch_ms / fused_ms:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--kernels", default=",".join(MAKERS))
    ap.add_argument("--agreement", action="store_true", help="top-1 agreement with fp32 instead of timings")
    ap.add_argument("--step", action="store_true", help="whole int4 steps, fused against the torch path")
    ap.add_argument("--model", default=None,
                    help="for --agreement (default bundled) and --step (default /tmp/santacoder-synth, "
                         "made by benchmarks/llama_cpp.py)")
    ap.add_argument("--pause-pid-file", default=None, help="SIGSTOP that process while timing (always resumed)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.agreement:
        agreement(a.model or "bundled")
        return
    names = [k for k in a.kernels.split(",") if k]
    if "int4-native" in names and kernels.native_lib() is None:
        print("int4-native: no native kernel on this machine (skipped)")
        names.remove("int4-native")
    torch.manual_seed(0)
    try:
        from benchmarks.llama_cpp import pause
    except ImportError:  # run as a script: benchmarks/ is on sys.path
        from llama_cpp import pause
    from pathlib import Path

    resume = pause(Path(a.pause_pid_file) if a.pause_pid_file else None)
    try:
        if a.step:
            steps(a.model or "/tmp/santacoder-synth", a.rounds, a.threads)
        else:
            timings(names, a)
    finally:
        resume()


def timings(names: list[str], a: argparse.Namespace) -> None:
    gbs = bandwidth_gbs(a.threads)
    print(f"threads={a.threads} load_average={os.getloadavg()[0]:.2f} fp32 GEMV bandwidth {gbs:.1f} GB/s")
    per_token = {k: 0.0 for k in names}
    bytes_token = {k: 0 for k in names}
    header = f"{'shape':<12} {'N x K':>12} " + " ".join(f"{k:>15}" for k in names)
    print(header)
    for shape, n, k, count in SHAPES:
        w = torch.randn(n, k) * 0.02
        fns = {}
        for name in names:
            fn, nbytes = MAKERS[name](w)
            fns[name] = fn
            bytes_token[name] += nbytes * count
        x = torch.randn(1, k)
        times = {name: [] for name in names}
        for name in names:
            fns[name](x)  # warm-up
        for _ in range(a.rounds):
            for name in names:
                t = time.perf_counter()
                fns[name](x)
                times[name].append((time.perf_counter() - t) * 1e3)
        row = []
        for name in names:
            ms = statistics.median(times[name])
            per_token[name] += ms * count
            row.append(f"{ms:>12.3f} ms")
        print(f"{shape:<12} {f'{n}x{k}':>12} " + " ".join(row))
        del w, fns
    print(f"{'per token':<25} " + " ".join(f"{per_token[k]:>12.1f} ms" for k in names))
    print(f"{'weight GB':<25} " + " ".join(f"{bytes_token[k] / 1e9:>15.3f}" for k in names))
    print(f"{'floor':<25} " + " ".join(f"{bytes_token[k] / gbs / 1e6:>12.1f} ms" for k in names))
    print(f"load_average={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
