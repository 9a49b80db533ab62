"""Our model's logits match transformers' GPTBigCodeForCausalLM on the same random weights."""

from __future__ import annotations

import pytest
import torch

from santa_lsp.engine.weights import load_checkpoint

transformers = pytest.importorskip("transformers")

# fp32 on CPU; the logits are O(10-100) here, so 1e-4 absolute is a tight bound.
ATOL = 1e-4


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return transformers.GPTBigCodeForCausalLM.from_pretrained(tiny_model_dir).eval()


def _ids(n: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 380, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_santacoder_dir"])
def test_logits_match_transformers(fixture, request, reference):
    model = load_checkpoint(request.getfixturevalue(fixture), fixture)
    ids = _ids()
    ours = model(ids, 0, model.new_cache())
    with torch.no_grad():
        theirs = reference(ids.unsqueeze(0)).logits[0].float()
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=ATOL), (ours - theirs).abs().max()


def test_incremental_forward_matches_full(tiny_model_dir):
    """Prefill in pieces then single-token steps gives the logits of one full pass."""
    model = load_checkpoint(tiny_model_dir, "tiny")
    ids = _ids(50, seed=2)
    full = model(ids, 0, model.new_cache())
    cache = model.new_cache()
    parts = [model(ids[:17], 0, cache), model(ids[17:30], 17, cache)]
    parts += [model(ids[i : i + 1], i, cache) for i in range(30, 50)]
    assert torch.allclose(torch.cat(parts), full, atol=ATOL)


def test_rewind_overwrites_cache_in_place(tiny_model_dir):
    """Rewinding is only a position: writing new tokens at position p replaces the old K/V."""
    model = load_checkpoint(tiny_model_dir, "tiny")
    a, b = _ids(30, seed=3), _ids(30, seed=4)
    cache = model.new_cache()
    model(a, 0, cache)
    mixed = torch.cat([a[:10], b[10:]])
    rewound = model(mixed[10:], 10, cache)
    fresh = model(mixed, 0, model.new_cache())[10:]
    assert torch.allclose(rewound, fresh, atol=ATOL)


def test_context_overflow_is_an_error(tiny_model_dir):
    model = load_checkpoint(tiny_model_dir, "tiny")
    with pytest.raises(ValueError, match="exceeds the context"):
        model(_ids(10), model.config.n_positions - 5, model.new_cache())
