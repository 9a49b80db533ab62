"""One native call for all transformer blocks of an int4 decode step of a few tokens (kernels.py's
`santa_decode_blocks`).

A 1.1B decode step on 2 cores spends ~16 ms in the int4 matmuls and, through the torch path,
~10 ms more in the ~20 small operations per layer around them (norms, GELU, residuals, the
cache write, attention) and their dispatch. The C loop runs the same fp32 arithmetic as
model.py around the same int4 kernel, so a token costs one call from Python. It applies where
every block's four matmuls are native `Int4Linear`s (dtype `int4` on a CPU where the kernel
builds) and to steps of up to MAX_TOKENS tokens (a decode step, a speculative verification, the
few new tokens of a keystroke) over a contiguous cache; longer prefills (where torch's flash
attention is faster) keep model.py's blocks, with the native matmuls (their prefill path) and
GELU; every other dtype keeps the torch path. SANTA_LSP_NATIVE_KERNELS=0 turns it off with the
kernel.
"""

from __future__ import annotations

import ctypes

import torch

from santa_lsp.engine import kernels
from santa_lsp.engine.model import GPTBigCode, KVCache
from santa_lsp.engine.quantize import Int4Linear

_P4 = ctypes.c_void_p * 4
MAX_TOKENS = 16


class _Layer(ctypes.Structure):
    _fields_ = [("ln1_w", ctypes.c_void_p), ("ln1_b", ctypes.c_void_p), ("ln2_w", ctypes.c_void_p),
                ("ln2_b", ctypes.c_void_p), ("qw", _P4), ("sc", _P4), ("mn", _P4), ("bias", _P4)]


class FusedDecode:
    """Callable (x [T, C] fp32 embeddings at positions pos..pos+T-1, pos, cache) -> x after every
    block (causal), cache rows pos..pos+T-1 written. Holds the tensors whose addresses it passes, so they outlive it."""

    def __init__(self, model: GPTBigCode, lib: ctypes.CDLL) -> None:
        cfg = model.config
        self.lib = lib
        self.max_tokens = MAX_TOKENS
        self.dims = (cfg.n_embd, cfg.n_head, cfg.head_dim, cfg.n_inner)
        self.eps = float(model.h[0].ln_1.eps)
        self._keep: list[torch.Tensor] = []
        self.layers = (_Layer * cfg.n_layer)()
        for layer, block in zip(self.layers, model.h):
            for name, t in (("ln1_w", block.ln_1.weight), ("ln1_b", block.ln_1.bias),
                            ("ln2_w", block.ln_2.weight), ("ln2_b", block.ln_2.bias)):
                setattr(layer, name, self._ptr(t))
            for i, lin in enumerate(_linears(block)):
                layer.qw[i], layer.sc[i], layer.mn[i] = (self._ptr(lin.packed), self._ptr(lin.scale),
                                                         self._ptr(lin.mins))
                layer.bias[i] = None if lin.bias is None else self._ptr(lin.bias)

    def __deepcopy__(self, memo: dict) -> None:
        """A copied model gets no fused step (the addresses are the original's tensors): it runs
        the torch path until `attach` gives it its own."""
        return None

    def _ptr(self, t: torch.Tensor) -> int:
        t = t.detach().contiguous()
        self._keep.append(t)
        return t.data_ptr()

    def __call__(self, x: torch.Tensor, pos: int, cache: KVCache) -> torch.Tensor:
        x = x.detach().float().contiguous().clone()
        k, v = cache.k, cache.v
        if not (k.is_contiguous() and v.is_contiguous() and k.dtype == v.dtype == torch.float32):
            raise ValueError("the fused decode step needs a contiguous fp32 cache")
        C, H, D, F = self.dims
        rc = self.lib.santa_decode_blocks(x.data_ptr(), x.shape[0], C, H, D, F, self.eps, self.layers, len(self.layers),
                                          k.data_ptr(), v.data_ptr(), cache.max_len, pos, torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"santa_decode_blocks failed ({rc})")
        return x


def _linears(block) -> tuple:
    return block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj


def attach(model: GPTBigCode) -> GPTBigCode:
    """Give `model` the fused decode step where it applies (see the module's docstring)."""
    lib = kernels.native_lib()
    cfg = model.config
    fits = (lib is not None and kernels.native_enabled() and model.wte.weight.dtype == torch.float32
            and cfg.n_embd == cfg.n_head * cfg.head_dim
            and all(isinstance(lin, Int4Linear) and lin.native for b in model.h for lin in _linears(b))
            and all(b.ln_1.weight.dtype == torch.float32 for b in model.h))
    model.decode_blocks = FusedDecode(model, lib) if fits else None
    if fits:  # longer steps (prefill chunks) run model.py's blocks: their GELU in C as well
        for block in model.h:
            block.mlp.gelu = kernels.gelu_tanh
    return model
