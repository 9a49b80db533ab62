"""Loading: a model name and the options in, a ready engine out.

`load_engine` is the one entry point the CLI, the server, the benchmark and the evaluation use:
it resolves the name (hub.py), reads the checkpoint (weights.py) and tokenizer (tokenizer.py),
picks the device and dtype, swaps in the CPU kernels (quantize.py) and wraps it all in an
`Engine` (generate.py); or, with an endpoint set, connects to a server instead (remote.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from santa_lsp.config import BUNDLED_MODEL, Options
from santa_lsp.engine.generate import Engine
from santa_lsp.engine.hub import BUNDLED_DIR, resolve
from santa_lsp.engine.model import PRESETS, GPTBigCode, ModelConfig, init_random
from santa_lsp.engine.qcache import load_quantized
from santa_lsp.engine.quantize import CPU_LINEARS, prepare_for_cpu
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.engine.weights import load_checkpoint, read_config
from santa_lsp.errors import ModelLoadError, ModelOfflineError

log = logging.getLogger(__name__)

# CPU-only dtypes: weight-quantized matmuls over an otherwise float32 model (lossy).
QUANTIZED = ("int8", "int4")
# `dtype: auto` on the CPU quantizes models from this size up (SantaCoder: 1.1B); smaller ones
# (the bundled model, tiny test models) stay exact in float32.
AUTO_QUANTIZE_PARAMS = 300_000_000


@dataclass
class LoadedModel:
    # An `Engine`, or a `santa_lsp.engine.remote.RemoteEngine` (same interface for the pipeline)
    # when the endpoint option is set.
    engine: Engine
    requested: str  # what the user asked for
    model: str  # what was loaded (differs after a fallback)
    device: str
    dtype: str
    load_s: float
    warning: str = ""


def pick_device_dtype(device: str, dtype: str, model: str = "(model)") -> tuple[torch.device, torch.dtype]:
    """The torch device and dtype for the options; `model` names the model in errors."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(model, "device 'cuda' was asked for but no CUDA GPU is available",
                             "Set device to auto or cpu.")
    if dtype == "auto":
        # fp16 on GPUs; on CPUs fp32 unless resolve_dtype picked a quantized path for a big model.
        dtype = "float16" if device == "cuda" else "float32"
    if dtype in QUANTIZED:
        if device == "cuda":
            raise ModelLoadError(model, f"dtype '{dtype}' is a CPU path", "Use float16 on CUDA.")
        return torch.device(device), torch.float32  # quantized matmul weights; everything else stays fp32
    return torch.device(device), getattr(torch, dtype)


def resolve_dtype(dtype: str, device: torch.device, config: ModelConfig) -> str:
    """The dtype option made concrete for a model of `config` on `device`. `auto`: float16 on
    CUDA; on the CPU float32 (exact) below AUTO_QUANTIZE_PARAMS parameters and, from there up,
    `int4` where the native kernel builds (else `int8`): on 2 cores a 1.1B model decodes a token
    in ~25-35 ms instead of ~230 ms, agreeing with float32 on ~97 % of greedy tokens
    (benchmarks/RESULTS.md, issue 16). Any other value is kept as it is."""
    if dtype != "auto" or device.type != "cpu":
        return dtype
    if config.n_params() < AUTO_QUANTIZE_PARAMS:
        return "float32"
    from santa_lsp.engine import kernels

    return "int4" if kernels.native_enabled() else "int8"


def prepare_model(model: GPTBigCode, device: str | torch.device, dtype: str) -> GPTBigCode:
    """Move `model` to its device and dtype; on CPU swap in the fast kernels for bf16 and int8."""
    dev, torch_dtype = pick_device_dtype(str(device), dtype)
    model = model.to(device=dev, dtype=torch_dtype)
    kind = dtype if dtype in QUANTIZED else str(torch_dtype).removeprefix("torch.")
    if dev.type == "cpu" and kind in CPU_LINEARS:
        prepare_for_cpu(model, kind)
    return model


def load_engine(
    opts: Options,
    allow_download: bool = True,
    tqdm_class: Any = None,
    on_warning: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load the model named by `opts.model`; a hub model that is offline falls back to `bundled`.

    With `opts.endpoint` set, nothing is loaded: the engine completes through that server
    (`RemoteEngine`), and `opts.model` is the served model name. Its warnings (the server is
    down, and again when it answers) go to `on_warning` for as long as the engine lives.
    """
    t0 = time.perf_counter()
    if opts.endpoint.strip():
        return _connect(opts, allow_download, on_warning, t0)
    device, _ = pick_device_dtype(opts.device, opts.dtype, opts.model)
    name, warning = opts.model, ""
    try:
        model, tokenizer, prepared, dtype_name = _load(name, opts.revision, allow_download, tqdm_class,
                                                       opts.dtype, device)
    except ModelOfflineError as err:
        if name == BUNDLED_MODEL:
            raise
        warning = f"{err} Meanwhile using the small bundled model, which is far weaker."
        log.warning(warning)
        if on_warning:
            on_warning(warning)
        name = BUNDLED_MODEL
        model, tokenizer, prepared, dtype_name = _load(name, None, False, None, opts.dtype, device)
    _set_threads(opts.threads, model)
    if not prepared:
        model = prepare_model(model, device, dtype_name)
    engine = Engine(model, tokenizer, cache_slots=opts.cache_slots, name=name)
    if dtype_name not in QUANTIZED:
        dtype_name = str(pick_device_dtype(device.type, dtype_name)[1]).removeprefix("torch.")
    return LoadedModel(engine, opts.model, name, device.type, dtype_name,
                       time.perf_counter() - t0, warning)


def _connect(opts: Options, allow_download: bool, on_warning: Callable[[str], None] | None, t0: float) -> LoadedModel:
    from urllib.parse import urlsplit

    from santa_lsp.engine.remote import connect

    engine = connect(opts.endpoint, opts.model, opts.revision, allow_download, on_warning=on_warning,
                     on_event=on_warning)
    where = urlsplit(engine.endpoint).netloc
    # device/dtype are what santa/status shows: "remote <host:port>" and the endpoint itself.
    return LoadedModel(engine, opts.model, opts.model, f"remote {where}", engine.endpoint,  # type: ignore[arg-type]
                       time.perf_counter() - t0)


# torch's own default, kept before a small model sets 1: a later, bigger model gets it back.
_DEFAULT_THREADS = torch.get_num_threads()


def _set_threads(threads: int, model: GPTBigCode) -> None:
    """Small models run best on one thread: dispatching tiny ops to a second thread costs more
    than it gives, badly so when the editor or other processes compete for the cores. Big models
    are bandwidth-bound and gain from every core, with passive OpenMP waits (santa_lsp/__init__)."""
    if threads <= 0:
        threads = 1 if model.config.n_params() < 50_000_000 else _DEFAULT_THREADS
    torch.set_num_threads(threads)


def _load(name: str, revision: str | None, allow_download: bool, tqdm_class: Any, dtype: str = "float32",
          device: torch.device = torch.device("cpu")) -> tuple[GPTBigCode, Tokenizer, bool, str]:
    """(model, tokenizer, prepared, dtype): `dtype` the option made concrete for this model
    (resolve_dtype); an int4 checkpoint on the CPU is returned already prepared for its kernel
    through the quantized-weight cache (qcache.py)."""
    if name.startswith("synthetic:"):
        # Random weights in a real shape: speed does not depend on the values.
        preset = name.split(":", 1)[1]
        if preset not in PRESETS:
            raise ModelLoadError(name, f"unknown preset '{preset}'", f"Choose one of {', '.join(PRESETS)}.")
        tokenizer = Tokenizer(BUNDLED_DIR / "tokenizer.json", "bundled")
        config = PRESETS[preset]
        if config.vocab_size < tokenizer.vocab_size:  # the tiny preset: room for every token id
            config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size)
        return init_random(GPTBigCode(config)), tokenizer, False, resolve_dtype(dtype, device, config)
    path = resolve(name, revision, allow_download, tqdm_class)
    # Cheap checks first: a 4 GB read should not precede a missing file error.
    dtype = resolve_dtype(dtype, device, read_config(path, name)[0])
    tokenizer = Tokenizer(path / "tokenizer.json", name)
    # int4 on CPU: a checkpoint's quantized weights come from (and go to) the on-disk cache.
    quantized = device.type == "cpu" and dtype == "int4"
    model = load_quantized(path, name, "int4") if quantized else load_checkpoint(path, name)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ModelLoadError(name, f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    return model, tokenizer, quantized, dtype
