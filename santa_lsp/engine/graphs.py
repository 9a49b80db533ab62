"""A decode step with static shapes, and its CUDA-graph capture.

`GPTBigCode.forward` slices the cache to the live length, so its shapes change every token.
Here one token attends over the whole preallocated cache with a mask computed from a position
*tensor*: every tensor keeps its shape and address from step to step, which is what a CUDA
graph needs. Rewinding stays free (only the position moves; stale cache rows are masked).
Both go through `GPTBigCode.run` and its one attention: the maths is written once, in model.py.

On CPU the static step runs eagerly (tests check it against `forward`); on CUDA
`GraphedDecoder` captures it once per cache and then replays it, one launch per token.
"""

from __future__ import annotations

import torch

from santa_lsp.engine.model import GPTBigCode, KVCache, causal_mask


@torch.inference_mode()
def static_decode(model: GPTBigCode, token: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits [V] (fp32) for one token `token` [1] at position `pos` [1]; writes its K/V in place.

    The same pass as `GPTBigCode.forward`, over the whole cache: rows past `pos` are masked."""
    return model.run(token, pos, cache.max_len, causal_mask(pos, cache.max_len), cache)[0]


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
