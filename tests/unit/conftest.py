"""Fixtures for the pipeline's unit tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from benchmarks.replay import ReplayEngine
from santa_lsp.config import Options
from santa_lsp.engine import GenerationParams
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.service import CompletionService


class ScriptedEngine(ReplayEngine):
    """Stands in for the engine: "generates" what `script(prompt_text)` says (after the forced,
    healed, text unless the script already starts with it), then end-of-text; the replay engine
    honours the healing constraint, the stop predicate and the token limit as the real engine does."""

    def __init__(self, tok: Tokenizer, script: Callable[[str], str]) -> None:
        super().__init__(tok, n_positions=2048)
        self.script, self.name = script, "scripted"

    def generate(self, prompt, params: GenerationParams, key="", cancelled=lambda: False, reuse=True):
        out = self.script(self.tokenizer.decode(prompt))
        self.will_write(out[len(params.forced_text):] if out.startswith(params.forced_text) else out, eot=True)
        return super().generate(prompt, params, key, cancelled, reuse)


@pytest.fixture()
def tok(tiny_tokenizer) -> Tokenizer:
    return Tokenizer(tiny_tokenizer)


@pytest.fixture()
def scripted(tok) -> Callable[..., CompletionService]:
    """scripted(script, **options): a service over a ScriptedEngine with the trained tokenizer."""

    def make(script: Callable[[str], str], **opts) -> CompletionService:
        return CompletionService(ScriptedEngine(tok, script), Options(**opts))

    return make
