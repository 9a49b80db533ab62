"""GPT-2 body with multi-query attention: the SantaCoder / GPTBigCode architecture.

The model only, in plain torch: config, KV cache, attention, MLP, block, forward. Its matmuls
are `nn.Linear` here; quantize.py swaps CPU kernels in after loading, load.py builds and places
it, generate.py drives it, graphs.py captures its decode step for CUDA graphs.

One shared K/V head (MQA) keeps the KV cache tiny: per layer, K and V are [max_len, head_dim]
for one sequence. The cache is preallocated and written in place by absolute position, so
rewinding to any prefix is O(1) (only the caller's notion of length moves) and a decode
step always sees tensors of the same shape.

Shapes in comments: T = new tokens, S = cache rows attended (cached + new tokens), C = n_embd, H = n_head,
D = head_dim, V = vocab.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from santa_lsp.errors import InvalidPrompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    n_inner: int
    layer_norm_epsilon: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def n_params(self) -> int:
        c, d, f = self.n_embd, self.head_dim, self.n_inner
        per_layer = 4 * c + (c * (c + 2 * d) + c + 2 * d) + (c * c + c) + (2 * c * f + f + c)
        return self.vocab_size * c + self.n_positions * c + self.n_layer * per_layer + 2 * c


PRESETS: dict[str, ModelConfig] = {
    # bigcode/santacoder: 1.1B parameters.
    "santacoder": ModelConfig(vocab_size=49280, n_positions=2048, n_embd=2048, n_layer=24, n_head=16, n_inner=8192),
    # For tests: a few hundred thousand parameters.
    "tiny": ModelConfig(vocab_size=384, n_positions=256, n_embd=64, n_layer=2, n_head=4, n_inner=256),
}


class KVCache(nn.Module):
    """K and V for one sequence: [n_layer, max_len, head_dim] each, written by position."""

    def __init__(self, config: ModelConfig, max_len: int, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        shape = (config.n_layer, max_len, config.head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    @property
    def max_len(self) -> int:
        return self.k.shape[1]

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


class MultiQueryAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        # Fused projection, as in gpt_bigcode: q (C) | k (D) | v (D).
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * config.head_dim)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, span: int, mask: torch.Tensor | None,
                k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
        """The model's one attention: `x` [T, C] at absolute `positions` [T] writes its K/V there,
        then attends over cache rows 0..span-1 where `mask` [T, span] allows (None: everywhere).

        `GPTBigCode.forward` passes the live rows (span = pos + T; no mask for a single token),
        the static decode step (graphs.py) the whole cache and a mask from a position tensor.
        """
        T, C = x.shape  # [T, C]
        H, D, S = self.n_head, self.head_dim, span
        q, k, v = self.c_attn(x).split((C, D, D), dim=-1)  # [T, C], [T, D], [T, D]
        # By absolute position: a rewind is only a shorter span, and what follows overwrites.
        k_cache.index_copy_(0, positions, k)
        v_cache.index_copy_(0, positions, v)
        keys, values = k_cache[:S], v_cache[:S]  # [S, D]
        if T > 1 and (x.is_cuda or T >= 32):
            # Prefill chunks (and any multi-token step on GPU): fused flash kernels, softmax
            # accumulated in fp32; on CPU 2x faster than the matmuls below at 256 x 1,024
            # (benchmarks/NOTES.md, issue 16), slower for a few tokens.
            out = F.scaled_dot_product_attention(
                q.reshape(T, H, D).transpose(0, 1).unsqueeze(0),  # [1, H, T, D]
                keys.expand(1, H, S, D),
                values.expand(1, H, S, D),
                attn_mask=mask,
            )[0].transpose(0, 1).reshape(T, C)
        else:
            # MQA: all heads share K, so the heads fold into the rows of one matmul.
            scores = torch.matmul(q.reshape(T * H, D), keys.t()).float() * (1.0 / math.sqrt(D))  # [T*H, S]
            if mask is not None:
                scores = scores.view(T, H, S).masked_fill(~mask.unsqueeze(1), float("-inf")).view(T * H, S)
            probs = _softmax(scores).to(values.dtype)  # softmax in fp32
            out = torch.matmul(probs, values).view(T, C)  # [T, C]
        return self.c_proj(out)


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """Row softmax. Small CPU inputs avoid torch.softmax, which opens a parallel region per call
    even for a decode step's [H, S] scores: with several threads each wake-up costs more than the
    math (measured: a tenth of a 1.1B decode step on a busy 2-core machine). GPUs keep the one
    fused kernel (a CUDA graph replays it)."""
    if scores.is_cuda or scores.numel() > 32768:
        return torch.softmax(scores, dim=-1)
    e = (scores - scores.amax(dim=-1, keepdim=True)).exp_()
    return e.div_(e.sum(dim=-1, keepdim=True))


def causal_mask(positions: torch.Tensor, span: int) -> torch.Tensor:
    """[T, span] bool: the query at absolute position p sees the keys at 0..p (and none of the
    stale rows a rewind leaves beyond it)."""
    return torch.arange(span, device=positions.device) <= positions.unsqueeze(1)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_inner)
        self.c_proj = nn.Linear(config.n_inner, config.n_embd)
        # tanh-approximated GELU of c_fc's output, which it may overwrite: fused.attach swaps in
        # the native kernel's (2 threads, ~2x faster on a 256-token prefill chunk than torch's).
        self.gelu: Callable[[torch.Tensor], torch.Tensor] = _gelu_tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = MultiQueryAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, span: int, mask: torch.Tensor | None,
                k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), positions, span, mask, k_cache, v_cache)
        return x + self.mlp(self.ln_2(x))


def _embedding(rows: int, dim: int) -> torch.Tensor:
    """An embedding table initialised as nn.Embedding does (N(0, 1)), except on the meta device
    (qcache and the streaming int4 load build the model there, then assign the real tensors):
    nn.Embedding's own init of a meta tensor imports torch._dynamo, ~1.3-1.9 s of start-up."""
    w = torch.empty(rows, dim)
    return w if w.is_meta else nn.init.normal_(w)


class GPTBigCode(nn.Module):
    """Parameter names follow transformers' gpt_bigcode without the `transformer.` prefix."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, _weight=_embedding(config.vocab_size, config.n_embd))
        self.wpe = nn.Embedding(config.n_positions, config.n_embd, _weight=_embedding(config.n_positions, config.n_embd))
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        # Set by `quantize.prepare_for_cpu`: a fast (quantized or prepacked) copy of the tied lm_head.
        self.lm_head: nn.Module | None = None
        # Set by `fused.attach` for int4 on CPU: all blocks of a step of up to `max_tokens` tokens
        # in one native call.
        self.decode_blocks: Any = None

    def new_cache(self, max_len: int | None = None) -> KVCache:
        p = self.wte.weight
        return KVCache(self.config, max_len or self.config.n_positions, p.device, p.dtype)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, pos: int, cache: KVCache, last_only: bool = False) -> torch.Tensor:
        """Run tokens `ids` [T] at absolute positions pos..pos+T-1; return fp32 logits [T or 1, V].

        Attention reads the live cache rows only, so shapes follow the length (graphs.py has the
        fixed-shape variant for CUDA graphs).
        """
        T = ids.shape[0]
        if pos + T > min(cache.max_len, self.config.n_positions):
            raise InvalidPrompt(f"sequence of {pos + T} tokens exceeds the context of {cache.max_len}")
        positions = torch.arange(pos, pos + T, device=ids.device)
        if self.decode_blocks is not None and T <= self.decode_blocks.max_tokens:
            try:
                x = self.decode_blocks(self.wte(ids) + self.wpe(positions), pos, cache)
                return self.head(x[-1:] if last_only else x)
            except RuntimeError as err:  # out of memory in the native step: the torch path from now on
                log.warning("fused decode step failed (%s): using the torch path", err)
                self.decode_blocks = None  # it rewrites the same cache rows below
        # One token sees every live row; a prefill chunk or a draft to verify sees causally.
        mask = causal_mask(positions, pos + T) if T > 1 else None
        return self.run(ids, positions, pos + T, mask, cache, last_only)

    def run(self, ids: torch.Tensor, positions: torch.Tensor, span: int, mask: torch.Tensor | None,
            cache: KVCache, last_only: bool = False) -> torch.Tensor:
        """The forward pass itself, shared by `forward` and the static decode step (graphs.py):
        tokens `ids` [T] at `positions` [T] attend over cache rows 0..span-1 where `mask`
        [T, span] allows (None: everywhere). fp32 logits [T or 1, V]. Callers hold inference mode."""
        x = self.wte(ids) + self.wpe(positions)  # [T, C]
        for i, block in enumerate(self.h):
            x = block(x, positions, span, mask, cache.k[i], cache.v[i])
        return self.head(x[-1:] if last_only else x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm and the lm_head: hidden states [T, C] -> fp32 logits [T, V]."""
        # Final norm in fp32; the tied lm_head reuses the token embedding.
        x = F.layer_norm(x.float(), (x.shape[-1],), self.ln_f.weight.float(), self.ln_f.bias.float(),
                         self.ln_f.eps)
        if self.lm_head is not None:
            return self.lm_head(x.to(self.wte.weight.dtype)).float()  # [T, V]
        return torch.matmul(x.to(self.wte.weight.dtype), self.wte.weight.t()).float()  # [T, V]


def init_random(model: GPTBigCode, seed: int = 0) -> GPTBigCode:
    """GPT-2 style initialisation, deterministic; for tests and the synthetic benchmark model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "ln" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return model
