"""The bundled model (santa_lsp/models/bundled) is a real, trained SantaCoder-architecture
model: it loads in transformers and in our engine with matching logits, it uses the
SantaCoder special tokens, it predicts held-out code far better than the same tokens
shuffled (a random model cannot), and it fills in the middle of a simple snippet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

BUNDLED = Path(__file__).resolve().parent.parent / "santa_lsp" / "models" / "bundled"
HELDOUT = Path(__file__).resolve().parent / "data" / "heldout"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
SPECIALS = ("<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>")

if not all((BUNDLED / f).exists() for f in FILES):
    pytest.skip(f"bundled model files are absent from {BUNDLED} (train with training/)",
                allow_module_level=True)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    model = transformers.GPTBigCodeForCausalLM.from_pretrained(BUNDLED)
    return model.eval()


@pytest.fixture(scope="module")
def tok():
    return tokenizers.Tokenizer.from_file(str(BUNDLED / "tokenizer.json"))


def test_config_is_santacoder_architecture():
    cfg = json.loads((BUNDLED / "config.json").read_text())
    assert cfg["model_type"] == "gpt_bigcode"
    assert cfg["multi_query"] is True
    assert cfg["activation_function"] == "gelu_pytorch_tanh"
    assert cfg["vocab_size"] % 128 == 0
    assert cfg["layer_norm_epsilon"] == 1e-5
    assert (BUNDLED / "model.safetensors").stat().st_size <= 32 * 1024 * 1024


def test_special_tokens_are_single_tokens(tok, hf_model):
    ids = []
    for t in SPECIALS:
        enc = tok.encode(t, add_special_tokens=False).ids
        assert enc == [tok.token_to_id(t)], t
        ids.append(enc[0])
    assert len(set(ids)) == len(SPECIALS)
    assert tok.get_vocab_size() <= hf_model.config.vocab_size
    text = "def f(x):\n    return x  # ünïcode\n"
    assert tok.decode(tok.encode(text).ids) == text  # byte-level: lossless round trip


def _heldout_ids(tok, name: str, limit: int) -> torch.Tensor:
    text = (HELDOUT / name).read_text(encoding="utf-8")
    return torch.tensor(tok.encode(text).ids[:limit])


@pytest.mark.parametrize("name", ["rich_fileno.py", "lodash_once.js", "CalendarUtils.java"])
def test_heldout_loss_beats_shuffled_tokens(tok, hf_model, name):
    ids = _heldout_ids(tok, name, min(hf_model.config.n_positions, 512))
    shuffled = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        real = hf_model(input_ids=ids[None], labels=ids[None]).loss.item()
        fake = hf_model(input_ids=shuffled[None], labels=shuffled[None]).loss.item()
    # A random model scores both near ln(vocab) ~ 9; a model that knows code is far
    # better on real code than on the same tokens in random order.
    assert real < fake - 1.0, (real, fake)
    assert real < 7.0, real  # ln(8192) = 9.0 for a uniform guess


def _fim_ids(tok, prefix: str, suffix: str, order: str) -> list[int]:
    pre, mid, suf = (tok.token_to_id(t) for t in ("<fim-prefix>", "<fim-middle>", "<fim-suffix>"))
    p = tok.encode(prefix, add_special_tokens=False).ids
    s = tok.encode(suffix, add_special_tokens=False).ids
    if order == "psm":
        return [pre, *p, suf, *s, mid]
    return [pre, suf, *s, mid, *p]


@pytest.mark.parametrize("order", ["psm", "spm"])
def test_greedy_fim_completion_is_nonempty(tok, hf_model, order):
    prefix = "def add(a, b):\n    "
    suffix = "\n\n\nprint(add(1, 2))\n"
    ids = torch.tensor([_fim_ids(tok, prefix, suffix, order)])
    out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                            do_sample=False, pad_token_id=tok.token_to_id("<fim-pad>"),
                            eos_token_id=tok.token_to_id("<|endoftext|>"))
    middle = tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
    assert middle.strip(), f"empty {order} completion"
    assert any(c.isalnum() for c in middle), repr(middle)


def test_engine_logits_match_transformers(tok, hf_model):
    engine_weights = pytest.importorskip("santa_lsp.engine.weights")
    model = engine_weights.load_checkpoint(BUNDLED, "bundled").float().eval()
    ids = _heldout_ids(tok, "rich_fileno.py", 64)
    cache = model.new_cache()
    ours = model(ids, 0, cache)
    with torch.no_grad():
        theirs = hf_model(input_ids=ids[None]).logits[0].float()
    torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=1e-3)


def test_corpus_decontamination_drops_eval_code_and_keeps_other_code():
    """training/build_corpus.py keeps evaluation problems out of the training corpus: a file
    with an eval problem's signature, or a 20-token window of its code, is dropped."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "training" / "build_corpus.py"
    spec = importlib.util.spec_from_file_location("build_corpus", path)
    bc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bc)
    eval_file = Path(__file__).resolve().parent / "data" / "eval" / "python.jsonl"
    rows = [json.loads(line) for line in eval_file.read_text().splitlines() if line.strip()]
    problems = {"tests-eval": [{"name": r["task_id"], "texts": [],
                                "code": r["prompt"] + r["canonical_solution"] + r["suffix"]}
                               for r in rows]}
    index = bc.decontam_index(problems)
    sum_list = rows[0]["prompt"] + rows[0]["canonical_solution"] + rows[0]["suffix"]
    assert bc.contaminated("import os\n\n" + sum_list, index) == "tests-eval"
    # the signature alone (another body) is enough
    assert bc.contaminated("def sum_list(numbers):\n    return 0\n", index) == "tests-eval"
    # a long enough verbatim window of the body is enough, even without the signature
    body = rows[0]["prompt"].split("\n", 1)[1] + rows[0]["canonical_solution"]
    assert bc.contaminated("def total_of(numbers):\n" + body, index) == "tests-eval"
    assert bc.contaminated((HELDOUT / "rich_fileno.py").read_text(), index) is None
    assert bc.contaminated("def sum_items(xs):\n    return sum(xs)\n", index) is None
