"""FIM special tokens are resolved by name, and user text never becomes a control token."""

from __future__ import annotations

import json

import pytest

from santa_lsp.engine.tokenizer import FIM_PREFIX, SPECIALS, Tokenizer
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


def test_underscore_spelling_is_rejected(tiny_tokenizer, tmp_path):
    """StarCoder spells the tokens <fim_prefix>; SantaCoder models need the hyphens."""
    bad = tmp_path / "tokenizer.json"
    bad.write_text(tiny_tokenizer.read_text().replace("<fim-prefix>", "<fim_prefix>"))
    with pytest.raises(TokenizerError):
        Tokenizer(bad)


def test_unreadable_tokenizer(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="unreadable"):
        Tokenizer(bad)
