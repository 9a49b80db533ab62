"""The static-shape decode step (the one CUDA graphs capture) matches the dynamic forward."""

from __future__ import annotations

import torch

from santa_lsp.engine.graphs import GraphedDecoder
from santa_lsp.engine.weights import load_checkpoint


def test_static_decode_matches_forward_including_rewind(tiny_model_dir):
    model = load_checkpoint(tiny_model_dir, "tiny")
    ids = torch.randint(0, 380, (40,), generator=torch.Generator().manual_seed(5))
    ref_cache, cache = model.new_cache(), model.new_cache()
    reference = model(ids, 0, ref_cache)  # [40, V]
    model(ids[:20], 0, cache)
    decoder = GraphedDecoder(model, cache)  # eager on CPU: same code the graph would capture
    for pos in range(20, 40):
        assert torch.allclose(decoder(int(ids[pos]), pos), reference[pos], atol=1e-4)
    # Rewind to 25 and continue with other tokens: stale rows beyond must not leak in.
    other = torch.cat([ids[:25], ids[:15]])
    fresh = model(other, 0, model.new_cache())
    for pos in range(25, 40):
        assert torch.allclose(decoder(int(other[pos]), pos), fresh[pos], atol=1e-4)
