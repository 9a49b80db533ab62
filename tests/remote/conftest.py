"""Fixtures for the remote backend: fake servers, tokenizers of both FIM spellings, a real vLLM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_openai import FakeOpenAI, Script  # noqa: E402


def starcoder_spelling(tokenizer_json: Path, out: Path) -> Path:
    """The same tiny tokenizer with StarCoder's spelling of the FIM tokens (<fim_prefix>...)."""
    out.write_text(tokenizer_json.read_text().replace("<fim-", "<fim_"))
    return out


@pytest.fixture(scope="session")
def starcoder_tokenizer(tmp_path_factory, tiny_tokenizer) -> Path:
    return starcoder_spelling(tiny_tokenizer, tmp_path_factory.mktemp("tok-starcoder") / "tokenizer.json")


@pytest.fixture
def fake():
    with FakeOpenAI(Script()) as server:
        yield server
