"""The native int4 kernel (engine/kernels.py) against the exact product of its dequantized
weights, against torch's int4 kernel (the fallback), and the fallback when it cannot be built."""

from __future__ import annotations

import copy
import os
from dataclasses import replace

import pytest
import torch

from santa_lsp.engine import kernels
from santa_lsp.engine.model import PRESETS, GPTBigCode, init_random
from santa_lsp.engine.quantize import Int4Linear, prepare_for_cpu

needs_native = pytest.mark.skipif(kernels.native_lib() is None, reason="no C compiler or x86 SIMD here")


def dequantized(weight: torch.Tensor) -> torch.Tensor:
    q, scale, mins = kernels.quantize_int4(weight)
    n, k = q.shape
    groups = q.float().reshape(n, k // kernels.GROUP, kernels.GROUP)
    return (groups * scale.float().unsqueeze(-1) + mins.float().unsqueeze(-1)).reshape(n, k)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_quantize_int4_roundtrip_is_within_half_a_step():
    w = torch.randn(96, 256, generator=torch.Generator().manual_seed(0))
    q, scale, _ = kernels.quantize_int4(w)
    assert q.min() >= 0 and q.max() <= 15
    step = scale.float().repeat_interleave(kernels.GROUP, dim=1)
    assert ((dequantized(w) - w).abs() <= 0.5 * step + 1e-3).all()


@needs_native
# decode, a speculative verify, prefill chunks (from 24 rows: the weights unpacked once per 64-row
# block, tiles of 4 tokens in assembly and a tail of 1)
@pytest.mark.parametrize("rows", [1, 5, 37, 64])
@pytest.mark.parametrize("k", [384, 2048])  # the pair layout; the lanes layout where AVX512-VNNI runs
def test_native_matches_dequantized_product(rows, k):
    gen = torch.Generator().manual_seed(rows)
    w = torch.randn(132, k, generator=gen) * 0.02  # 132: a remainder after the 64-row blocks
    bias = torch.randn(132, generator=gen)
    x = torch.randn(rows, k, generator=gen)
    q, scale, mins = kernels.quantize_int4(w)
    y = kernels.native_mm(x, kernels.pack_native(q), scale, mins, bias)
    ref = x @ dequantized(w).t() + bias
    # The only approximation is int8 activations (per group of 64): ~1% of the output...
    assert rel_err(y, ref) < 0.05
    # ...and exactly what the kernel computes: x rounded to int8 per group (half to even), the
    # 4-bit products summed as integers, the min term on the exact fp32 group sums.
    g = kernels.GROUP
    xg = x.double().reshape(rows, k // g, g)
    xs = xg.abs().amax(-1, keepdim=True).float().double() / 127
    xq = torch.where(xs > 0, (xg / xs).round(), torch.zeros_like(xg))
    s64, m64 = scale.double(), mins.double()
    qg = q.double().reshape(-1, k // g, g)
    exact = torch.einsum("tge,nge,ng,tg->tn", xq, qg, s64, xs.squeeze(-1)) + xg.sum(-1) @ m64.t() + bias.double()
    assert rel_err(y.double(), exact) < 1e-4
    # Rows are independent: the batch gives each row what it gives that row alone.
    one = kernels.native_mm(x[-1:], kernels.pack_native(q), scale, mins, bias)
    assert torch.equal(one[0], y[-1])


@needs_native
def test_native_and_torch_int4_linear_agree(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    w, b = torch.randn(256, 512, generator=gen) * 0.02, torch.randn(256, generator=gen) * 0.1
    x = torch.randn(7, 512, generator=gen)  # the model's activations are [tokens, features]
    native = Int4Linear(w, b)
    monkeypatch.setenv("SANTA_LSP_NATIVE_KERNELS", "0")
    fallback = Int4Linear(w, b)
    assert native.native and not fallback.native
    exact = x @ w.t() + b
    yn, yf = native(x), fallback(x)
    assert yn.shape == yf.shape == (7, 256)
    # Both carry the 4-bit weight error (~10% of the output here); they differ only by the
    # activations' rounding (int8 per group against bf16), far less than that.
    assert rel_err(yn, exact) < 0.15 and rel_err(yf, exact) < 0.15
    assert rel_err(yn, yf) < 0.03


def test_fallback_when_the_kernel_cannot_be_built(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached from earlier builds
    monkeypatch.setattr(kernels, "_tried", False)
    monkeypatch.setattr(kernels, "_lib", None)
    assert kernels.native_lib() is None and not kernels.native_enabled()
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(2)) * 0.02
    layer = Int4Linear(w, None)
    assert not layer.native
    x = torch.randn(2, 256)
    assert rel_err(layer(x), x @ w.t()) < 0.15


def test_int4_model_follows_fp32():
    """A whole model through prepare_for_cpu('int4') (native where it builds) stays close to fp32."""
    cfg = replace(PRESETS["tiny"], n_embd=128, n_inner=512)  # in_features a multiple of 128: native-eligible
    torch.manual_seed(0)
    ref = init_random(GPTBigCode(cfg)).eval()
    quant = prepare_for_cpu(copy.deepcopy(ref), "int4")
    ids = torch.randint(0, cfg.vocab_size, (48,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = ref(ids, 0, ref.new_cache())
        b = quant(ids, 0, quant.new_cache())
    assert torch.isfinite(b).all()
    assert rel_err(b, a) < 0.2


@needs_native
def test_quantized_cache_roundtrip(tmp_path, monkeypatch):
    """The second int4 load comes from the cache (no checkpoint read) and computes the same."""
    from santa_lsp.engine import qcache
    from santa_lsp.engine.weights import save_gpt_bigcode

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    save_gpt_bigcode(init_random(GPTBigCode(replace(PRESETS["tiny"], n_embd=128, n_inner=512))), ckpt)
    first = qcache.load_quantized(ckpt, "tiny", "int4")
    path = qcache.cache_path(ckpt, "int4")
    assert path is not None and path.is_file()
    again = qcache.load(path, ckpt, "tiny")  # reads config.json only
    ids = torch.randint(0, 300, (20,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(first(ids, 0, first.new_cache()), again(ids, 0, again.new_cache()))
    # A bad cache file is quantized again, not an error. (Replaced, not truncated in place: the
    # loaded tensors map the old file, as a running server's would.)
    (tmp_path / "damaged").write_bytes(b"damaged")
    os.replace(tmp_path / "damaged", path)
    third = qcache.load_quantized(ckpt, "tiny", "int4")
    with torch.no_grad():
        assert torch.equal(third(ids, 0, third.new_cache()), again(ids, 0, again.new_cache()))
    # The checkpoint changed: another cache file.
    os.utime(ckpt / "model.safetensors", ns=(1, 1))
    assert qcache.cache_path(ckpt, "int4") != path


@needs_native
def test_load_engine_int4_uses_the_quantized_cache(tmp_path, monkeypatch):
    """`dtype: int4` through load_engine: the first load writes the cache, the second reads it
    and generates the same tokens."""
    from santa_lsp.config import Options
    from santa_lsp.engine import GenerationParams, load_engine
    from santa_lsp.engine import qcache
    from santa_lsp.engine.hub import BUNDLED_DIR

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = qcache.cache_path(BUNDLED_DIR, "int4")
    assert path is not None and not path.exists()
    opts = Options(model="bundled", device="cpu", dtype="int4")
    first = load_engine(opts, allow_download=False)
    assert path.is_file() and first.dtype == "int4"
    second = load_engine(opts, allow_download=False)
    assert isinstance(second.engine.model.h[0].mlp.c_fc, Int4Linear)
    ids = first.engine.tokenizer.encode("def add(a, b):\n    return")
    params = GenerationParams(max_new_tokens=8)
    assert first.engine.generate(ids, params).ids == second.engine.generate(ids, params).ids


@needs_native
def test_fused_decode_step_matches_the_torch_path(monkeypatch):
    """The int4 decode step in one native call (engine/fused.py) computes what the torch path
    computes: from the same cache, the same logits and the same new cache row, up to the
    activations' int8 rounding; and it applies to int4 with the native kernel only."""
    from santa_lsp.engine import fused

    cfg = replace(PRESETS["tiny"], n_embd=256, n_head=4, n_inner=1024, n_layer=3)  # both kernel layouts
    torch.manual_seed(0)
    ref = init_random(GPTBigCode(cfg)).eval()
    with torch.no_grad():  # non-trivial norms and biases, so that every argument is exercised
        for name, p in ref.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    quant = prepare_for_cpu(copy.deepcopy(ref), "int4")
    step = quant.decode_blocks
    assert isinstance(step, fused.FusedDecode)
    ids = torch.randint(5, cfg.vocab_size, (40,), generator=torch.Generator().manual_seed(4))
    cache, cache_ref = quant.new_cache(), ref.new_cache()
    with torch.no_grad():
        quant(ids[:24], 0, cache)
        ref(ids[:24], 0, cache_ref)
        agree = 0
        for pos in range(24, 40):
            before = copy.deepcopy(cache)
            fused_logits = quant(ids[pos:pos + 1], pos, cache)
            quant.decode_blocks = None
            torch_logits = quant(ids[pos:pos + 1], pos, before)
            quant.decode_blocks = step
            exact = ref(ids[pos:pos + 1], pos, cache_ref)
            assert rel_err(fused_logits, torch_logits) < 0.02
            assert rel_err(cache.k[:, : pos + 1], before.k[:, : pos + 1]) < 0.02
            assert rel_err(cache.v[:, : pos + 1], before.v[:, : pos + 1]) < 0.02
            assert rel_err(fused_logits, exact) < 0.2
            agree += int(fused_logits.argmax() == torch_logits.argmax())
        assert agree >= 14  # of 16
        # A step of several tokens (typed characters, a speculative verification): causal
        # attention with each thread's share of the rows merged per token and head.
        before = copy.deepcopy(cache)
        fused_logits = quant(ids[30:35], 40, cache)
        quant.decode_blocks = None
        torch_logits = quant(ids[30:35], 40, before)
        quant.decode_blocks = step
        assert fused_logits.shape == torch_logits.shape == (5, cfg.vocab_size)
        assert rel_err(fused_logits, torch_logits) < 0.02
        assert rel_err(cache.k[:, :45], before.k[:, :45]) < 0.02 and rel_err(cache.v[:, :45], before.v[:, :45]) < 0.02
    # Other dtypes, and int4 without the native kernel, keep the torch path.
    assert prepare_for_cpu(copy.deepcopy(ref), "int8").decode_blocks is None
    monkeypatch.setenv("SANTA_LSP_NATIVE_KERNELS", "0")
    assert prepare_for_cpu(copy.deepcopy(ref), "int4").decode_blocks is None


def test_auto_dtype_on_the_cpu_quantizes_big_models_only(monkeypatch, tmp_path):
    """`dtype: auto` on the CPU: float32 for small models (the bundled one), the 4-bit path for
    SantaCoder-sized ones (int8 where the native kernel is off); explicit dtypes are kept."""
    from santa_lsp.config import Options
    from santa_lsp.engine import load, load_engine
    from santa_lsp.engine.weights import save_gpt_bigcode

    cpu = torch.device("cpu")
    big, small = PRESETS["santacoder"], PRESETS["tiny"]
    assert big.n_params() > load.AUTO_QUANTIZE_PARAMS > small.n_params()
    assert load.resolve_dtype("auto", cpu, small) == "float32"
    assert load.resolve_dtype("auto", cpu, big) == ("int4" if kernels.native_enabled() else "int8")
    assert load.resolve_dtype("float32", cpu, big) == "float32"
    assert load.resolve_dtype("auto", torch.device("cuda"), big) == "auto"  # float16 there
    monkeypatch.setenv("SANTA_LSP_NATIVE_KERNELS", "0")
    assert load.resolve_dtype("auto", cpu, big) == "int8"
    monkeypatch.delenv("SANTA_LSP_NATIVE_KERNELS")
    # Through load_engine, with the threshold lowered so that a small checkpoint counts as big.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    cfg = replace(PRESETS["tiny"], n_embd=128, n_inner=512, vocab_size=8192)  # the bundled tokenizer's
    save_gpt_bigcode(init_random(GPTBigCode(cfg)), ckpt)
    (ckpt / "tokenizer.json").write_bytes((load.BUNDLED_DIR / "tokenizer.json").read_bytes())
    assert load_engine(Options(model=str(ckpt), device="cpu"), allow_download=False).dtype == "float32"
    monkeypatch.setattr(load, "AUTO_QUANTIZE_PARAMS", 1000)
    loaded = load_engine(Options(model=str(ckpt), device="cpu"), allow_download=False)
    want = "int4" if kernels.native_enabled() else "int8"
    assert loaded.dtype == want
    if want == "int4":
        assert isinstance(loaded.engine.model.h[0].mlp.c_fc, Int4Linear)
        assert loaded.engine.model.decode_blocks is not None
    assert load_engine(Options(model=str(ckpt), device="cpu", dtype="float32"),
                       allow_download=False).dtype == "float32"


@needs_native
def test_a_failing_fused_step_falls_back_to_the_torch_path():
    """Fault injection: the native step reports failure (it returns -2 when out of memory, which
    cannot be provoked here). The step is answered by the torch path, which rewrites the cache
    rows the native call may have half written, and later steps stay on the torch path."""
    from santa_lsp.engine import fused

    cfg = replace(PRESETS["tiny"], n_embd=128, n_inner=512)
    torch.manual_seed(0)
    model = prepare_for_cpu(init_random(GPTBigCode(cfg)).eval(), "int4")
    reference = copy.deepcopy(model)  # a copy runs the torch path: the step's addresses are the original's
    assert reference.decode_blocks is None
    step = model.decode_blocks
    assert isinstance(step, fused.FusedDecode)

    class Failing:
        def __init__(self, lib):
            self.lib = lib

        def santa_decode_blocks(self, *args):
            self.lib.santa_decode_blocks(*args)  # writes the cache rows, then "fails"
            return -2

    step.lib = Failing(step.lib)
    ids = torch.randint(5, 300, (12,), generator=torch.Generator().manual_seed(5))
    cache, ref_cache = model.new_cache(), reference.new_cache()
    with torch.no_grad():
        model(ids[:8], 0, cache)
        reference(ids[:8], 0, ref_cache)
        for pos in range(8, 12):
            got = model(ids[pos:pos + 1], pos, cache)
            assert model.decode_blocks is None
            assert torch.equal(got, reference(ids[pos:pos + 1], pos, ref_cache))
    assert torch.equal(cache.k, ref_cache.k) and torch.equal(cache.v, ref_cache.v)


@needs_native
@pytest.mark.parametrize("fmt", ["gpt_bigcode", "santacoder"])
def test_int4_quantized_block_by_block_equals_the_whole_load(fmt, tmp_path):
    """The first int4 load reads a safetensors checkpoint one block at a time (qcache.py
    quantize_streaming, so that its peak memory is the int4 model, not the fp32 one) and builds
    exactly the model the whole-checkpoint path builds, in both checkpoint formats; a checkpoint
    that lacks a tensor or has one too many is the same clear error."""
    import importlib.util
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    from santa_lsp.engine import qcache
    from santa_lsp.engine.weights import load_checkpoint, save_gpt_bigcode
    from santa_lsp.errors import ModelLoadError

    torch.manual_seed(0)
    model = init_random(GPTBigCode(replace(PRESETS["tiny"], n_embd=128, n_inner=512, n_layer=3)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    ckpt = tmp_path / "ckpt"
    if fmt == "gpt_bigcode":
        save_gpt_bigcode(model, ckpt)
    else:  # the tests' writer of the original layout, from tests/conftest.py
        spec = importlib.util.spec_from_file_location("tests_root_conftest", Path(__file__).parents[1] / "conftest.py")
        root_conftest = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(root_conftest)
        root_conftest.write_santacoder_format(model, ckpt)
    streamed = qcache.quantize_streaming(ckpt, "tiny")
    whole = prepare_for_cpu(load_checkpoint(ckpt, "tiny"), "int4")
    assert streamed is not None and streamed.decode_blocks is not None
    assert all(not t.is_meta for t in [*streamed.parameters(), *streamed.buffers()])
    ids = torch.randint(5, 300, (20,), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a_cache, b_cache = streamed.new_cache(), whole.new_cache()
        assert torch.equal(streamed(ids[:19], 0, a_cache), whole(ids[:19], 0, b_cache))
        assert torch.equal(streamed(ids[19:], 19, a_cache), whole(ids[19:], 19, b_cache))  # the fused step
    weights = load_file(str(ckpt / "model.safetensors"))
    victim = next(k for k in weights if "h.1." in k and "ln_2.weight" in k)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((ckpt / "config.json").read_bytes())
    save_file({k: v for k, v in weights.items() if k != victim}, str(broken / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="missing"):
        qcache.quantize_streaming(broken, "tiny")
    extra = dict(weights, **{victim.replace("h.1.", "h.7."): weights[victim].clone()})  # a block beyond n_layer
    save_file(extra, str(broken / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="unexpected"):
        qcache.quantize_streaming(broken, "tiny")


needs_vnni = pytest.mark.skipif(not kernels.native_int8(), reason="no AVX512-VNNI here: the lm_head stays on fbgemm")


@needs_vnni
@pytest.mark.parametrize("rows", [1, 3, 16])  # decode, a few typed tokens, a speculative verification
def test_native_int8_matches_the_dequantized_product_and_fbgemm(rows):
    """The int4 model's lm_head without fbgemm's prepacking: the same int8 weights, the same
    product within activation rounding, the same top token as fbgemm's kernel."""
    from santa_lsp.engine.quantize import Int8Linear

    torch.manual_seed(0)
    w, bias = torch.randn(1000, 256) * 0.02, torch.randn(1000) * 0.01
    x = torch.randn(rows, 256)
    native, packed = Int8Linear(w, bias, native=True), Int8Linear(w, bias)
    assert native.native and not packed.native
    qn, sn, _ = native.int8()
    qp, sp, _ = packed.int8()
    assert torch.equal(qn, qp) and torch.equal(sn, sp)  # the same quantization either way
    ref = x @ (qn.float() * sn.unsqueeze(1)).t() + bias
    y, yp = native(x), packed(x)
    assert y.shape == (rows, 1000)
    assert rel_err(y, ref) < 0.02 and rel_err(yp, ref) < 0.02
    assert torch.equal(y.argmax(-1), ref.argmax(-1))
    again = Int8Linear.from_int8(qn, sn, bias, native=True)  # as the quantized cache rebuilds it
    assert torch.equal(again(x), y)


@needs_native
def test_native_gelu_matches_torch():
    """MLP.gelu of int4 models (fused.attach): in place, equal to torch's tanh GELU to rounding."""
    x = torch.randn(3, 40000, generator=torch.Generator().manual_seed(0)) * 4
    x[0, :4] = torch.tensor([0.0, -100.0, 100.0, 1e-30])
    ref = torch.nn.functional.gelu(x, approximate="tanh")
    y = kernels.gelu_tanh(x)
    assert y is x
    assert (y - ref).abs().max() < 2e-6
    half = torch.randn(8, 8).half()  # not fp32: torch's
    assert torch.equal(kernels.gelu_tanh(half), torch.nn.functional.gelu(half, approximate="tanh"))


@needs_native
def test_int4_and_int8_layers_quantize_in_row_slices_with_the_same_result():
    """Int4Linear and Int8Linear quantize big layers in slices of rows (a lower first-load
    peak); a layer crossing slice boundaries gets what the whole matrix quantized at once gets."""
    from santa_lsp.engine import quantize
    from santa_lsp.engine.quantize import Int8Linear

    w = torch.randn(2 * quantize._ROWS + 4, 256, generator=torch.Generator().manual_seed(3)) * 0.02
    lin = Int4Linear(w, None)
    q, scale, mins = kernels.quantize_int4(w)
    assert torch.equal(lin.packed, kernels.pack_native(q))
    assert torch.equal(lin.scale, scale) and torch.equal(lin.mins, mins)
    q8, s8, _ = Int8Linear(w, None).int8()
    whole = torch.quantize_per_channel(w, (w.abs().amax(1).clamp(min=1e-8) / 127).double(),
                                       torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
    assert torch.equal(q8, whole.int_repr())
    assert torch.allclose(s8, whole.q_per_channel_scales().float())


@needs_native
@pytest.mark.skipif(kernels.native_int8() is False and kernels.native_lib() is not None
                    and kernels.native_lib().santa_int4_isa() != 512, reason="this machine has no AVX-512: it runs the AVX2 code already")
def test_the_avx2_build_computes_the_same(tmp_path):
    """Laptops without AVX-512 run the AVX2 code: the pair layout, the scalar attention, the
    lm_head on fbgemm. Built here with -mno-avx512f (SANTA_LSP_KERNEL_FLAGS) into a fresh cache,
    the kernel and fused-step tests pass with it too."""
    import subprocess
    import sys

    env = {**os.environ, "SANTA_LSP_KERNEL_FLAGS": "-mno-avx512f", "XDG_CACHE_HOME": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "from santa_lsp.engine import kernels; "
                            "print(kernels.native_lib().santa_int4_isa(), kernels.native_int8())"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert probe.stdout.split() == ["256", "False"], probe.stderr
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                          "fused_decode_step_matches or native_matches_dequantized or native_and_torch_int4"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
