"""Fixtures for the pipeline's unit tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from santa_lsp.config import Options
from santa_lsp.engine import GenerationParams, GenerationResult
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.service import CompletionService


class ScriptedEngine:
    """Stands in for the engine: "generates" what `script(prompt_text)` says (after the forced,
    healed, text unless the script already starts with it) and calls the stop predicate token
    by token, as the real engine does."""

    def __init__(self, tok: Tokenizer, script: Callable[[str], str]) -> None:
        self.tokenizer, self.script = tok, script
        self.n_positions, self.name, self.calls = 2048, "scripted", 0

    def generate(self, prompt, params: GenerationParams, key="", cancelled=lambda: False, reuse=True):
        self.calls += 1
        out = self.script(self.tokenizer.decode(prompt))
        if not out.startswith(params.forced_text):
            out = params.forced_text + out
        ids, reason = [], "eot"
        for token in self.tokenizer.encode(out)[:params.max_new_tokens]:
            ids.append(token)
            if params.stop is not None and params.stop(ids):
                reason = "stop"
                break
        return GenerationResult(ids, reason, len(prompt), 0, len(prompt), 1.0, 1.0)


@pytest.fixture()
def tok(tiny_tokenizer) -> Tokenizer:
    return Tokenizer(tiny_tokenizer)


@pytest.fixture()
def scripted(tok) -> Callable[..., CompletionService]:
    """scripted(script, **options): a service over a ScriptedEngine with the trained tokenizer."""

    def make(script: Callable[[str], str], **opts) -> CompletionService:
        return CompletionService(ScriptedEngine(tok, script), Options(**opts))

    return make
