"""A decode step with static shapes, and its CUDA-graph capture.

`GPTBigCode.forward` slices the cache to the live length, so its shapes change every token.
Here one token attends over the whole preallocated cache with a mask computed from a position
*tensor*: every tensor keeps its shape and address from step to step, which is what a CUDA
graph needs. Rewinding stays free (only the position moves; stale cache rows are masked).

On CPU the static step runs eagerly (tests check it against `forward`); on CUDA
`GraphedDecoder` captures it once per cache and then replays it, one launch per token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from santa_lsp.engine.model import GPTBigCode, KVCache


@torch.inference_mode()
def static_decode(model: GPTBigCode, token: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits [V] (fp32) for one token `token` [1] at position `pos` [1]; writes its K/V in place."""
    cfg = model.config
    C, H, D = cfg.n_embd, cfg.n_head, cfg.head_dim
    S = cache.max_len
    visible = torch.arange(S, device=pos.device) <= pos  # [S]
    x = model.wte(token) + model.wpe(pos)  # [1, C]
    for i, block in enumerate(model.h):
        attn = block.attn
        q, k, v = attn.c_attn(block.ln_1(x)).split((C, D, D), dim=-1)  # [1, C], [1, D], [1, D]
        cache.k[i].index_copy_(0, pos, k)
        cache.v[i].index_copy_(0, pos, v)
        scores = torch.matmul(q.reshape(H, D), cache.k[i].t()).float() * (1.0 / math.sqrt(D))  # [H, S]
        scores = scores.masked_fill(~visible, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1).to(x.dtype), cache.v[i]).reshape(1, C)  # [1, C]
        x = x + attn.c_proj(out)
        x = x + block.mlp(block.ln_2(x))
    ln = model.ln_f
    x = F.layer_norm(x.float(), (C,), ln.weight.float(), ln.bias.float(), ln.eps)
    return torch.matmul(x.to(model.wte.weight.dtype), model.wte.weight.t()).float()[0]


class GraphedDecoder:
    """Replays a captured `static_decode` for one cache; eager on devices without graphs."""

    def __init__(self, model: GPTBigCode, cache: KVCache) -> None:
        self.model, self.cache = model, cache
        device = cache.k.device
        self._token = torch.zeros(1, dtype=torch.long, device=device)
        self._pos = torch.zeros(1, dtype=torch.long, device=device)
        self._graph = None
        self._logits: torch.Tensor | None = None
        if device.type == "cuda":
            self._capture()

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up outside the graph, as torch requires
            for _ in range(2):
                static_decode(self.model, self._token, self._pos, self.cache)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._logits = static_decode(self.model, self._token, self._pos, self.cache)

    def __call__(self, token: int, pos: int) -> torch.Tensor:
        """Logits [V] for `token` at `pos` (the cache rows >= pos are overwritten or masked)."""
        self._token.fill_(token)
        self._pos.fill_(pos)
        if self._graph is None:
            return static_decode(self.model, self._token, self._pos, self.cache)
        self._graph.replay()
        return self._logits
