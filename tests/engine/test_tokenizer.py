"""FIM special tokens are resolved by name, and user text never becomes a control token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from santa_lsp.engine.tokenizer import FIM_PREFIX, FIM_SUFFIX, SPECIALS, Tokenizer
from santa_lsp.errors import TokenizerError


def test_specials_resolved_by_name(tiny_tokenizer):
    tok = Tokenizer(tiny_tokenizer)
    assert set(tok.ids) == set(SPECIALS)
    assert len(set(tok.ids.values())) == len(SPECIALS)
    assert tok.eot_id == tok.ids["<|endoftext|>"]


def test_special_token_text_in_user_code_stays_text(tiny_tokenizer):
    tok = Tokenizer(tiny_tokenizer)
    text = 'marker = "<fim-prefix><fim-middle><|endoftext|>"'
    ids = tok.encode(text)
    assert not set(ids) & tok.special_ids
    assert tok.decode(ids) == text


def test_round_trip_non_ascii(tiny_tokenizer):
    tok = Tokenizer(tiny_tokenizer)
    text = "s = 'héllo 世界 😀 e\u0301'\n"
    assert tok.decode(tok.encode(text)) == text
    assert b"".join(tok.token_bytes(i) for i in tok.encode(text)) == text.encode("utf-8")


def test_missing_fim_token_is_a_clear_error(tiny_tokenizer, tmp_path):
    raw = json.loads(tiny_tokenizer.read_text())
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] != FIM_PREFIX]
    raw["model"]["vocab"].pop(FIM_PREFIX, None)
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(TokenizerError, match="no '<fim-prefix>' token"):
        Tokenizer(bad)


def test_mixed_spellings_are_rejected(tiny_tokenizer, tmp_path):
    """A tokenizer uses one spelling for all FIM tokens; a mix is no FIM tokenizer we know."""
    bad = tmp_path / "tokenizer.json"
    bad.write_text(tiny_tokenizer.read_text().replace("<fim-prefix>", "<fim_prefix>"))
    with pytest.raises(TokenizerError, match="no '<fim_middle>' token"):
        Tokenizer(bad)


@pytest.fixture
def starcoder_tokenizer(tiny_tokenizer, tmp_path) -> Path:
    """The tiny tokenizer with StarCoder's spelling (<fim_prefix>...), as starcoderbase-1b and
    tiny_starcoder_py have it."""
    path = tmp_path / "tokenizer.json"
    path.write_text(tiny_tokenizer.read_text().replace("<fim-", "<fim_"))
    return path


def test_starcoder_spelling(starcoder_tokenizer, tiny_tokenizer):
    star, santa = Tokenizer(starcoder_tokenizer), Tokenizer(tiny_tokenizer)
    assert (star.spelling, santa.spelling) == ("starcoder", "santacoder")
    # ids stay keyed by the canonical names, so prompts are built the same way for both.
    assert star.ids == santa.ids
    assert star.names[FIM_PREFIX] == "<fim_prefix>" and santa.names[FIM_PREFIX] == "<fim-prefix>"
    assert star.prompt_text([star.ids[FIM_PREFIX], *star.encode("x")]) == "<fim_prefix>x"
    # Either spelling in user code stays text.
    text = "s = '<fim_prefix><fim-prefix><fim_middle>'"
    assert not set(star.encode(text)) & star.special_ids and star.decode(star.encode(text)) == text


def test_other_special_tokens_end_a_suggestion(tiny_tokenizer, tmp_path):
    """StarCoder's <filename>, <gh_stars>... are special too: generation stops at them."""
    raw = json.loads(tiny_tokenizer.read_text())
    new_id = max(t["id"] for t in raw["added_tokens"]) + 1
    raw["added_tokens"].append({**raw["added_tokens"][0], "id": new_id, "content": "<filename>"})
    raw["model"]["vocab"]["<filename>"] = new_id
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(raw))
    tok = Tokenizer(path)
    assert new_id in tok.special_ids and new_id not in tok.ids.values()
    assert tok.token_bytes(new_id) == b""


@pytest.mark.parametrize("spelling", ["santacoder", "starcoder"])
def test_a_tiny_model_of_each_spelling_completes_in_process(spelling, tiny_model_dir, tmp_path):
    """A gpt_bigcode checkpoint with either spelling loads and completes; its prompt holds its
    own FIM tokens."""
    from santa_lsp.config import Options
    from santa_lsp.engine import load_engine
    from santa_lsp.service import CompletionService

    model = tmp_path / spelling
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        (model / name).write_bytes((tiny_model_dir / name).read_bytes())
    text = (tiny_model_dir / "tokenizer.json").read_text()
    (model / "tokenizer.json").write_text(text.replace("<fim-", "<fim_") if spelling == "starcoder" else text)
    loaded = load_engine(Options(model=str(model), max_new_tokens=4), allow_download=False)
    tok = loaded.engine.tokenizer
    assert tok.spelling == spelling
    service = CompletionService(loaded.engine, Options(model=str(model), max_new_tokens=4, mode="multi-line"))
    completion = service.complete("import os\n\nprint(", 17, postprocessing=False)
    assert completion is not None and completion.generation.generated_tokens > 0
    prompt = service.prompts.build("import os\n\nprint(", 17, 200)
    assert tok.prompt_text(prompt.ids).startswith(tok.names[FIM_PREFIX] + tok.names[FIM_SUFFIX])


def test_unreadable_tokenizer(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="unreadable"):
        Tokenizer(bad)
