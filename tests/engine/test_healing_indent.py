"""Token healing keeps the user's indentation: no token may add whitespace after healed whitespace."""

from __future__ import annotations

import pytest

from santa_lsp.config import Options
from santa_lsp.engine import load_engine
from santa_lsp.engine.hub import BUNDLED_DIR
from santa_lsp.service import CompletionService

pytestmark = pytest.mark.skipif(not (BUNDLED_DIR / "config.json").is_file(), reason="bundled model missing")


@pytest.fixture(scope="module")
def engine():
    return load_engine(Options(model="bundled")).engine


def test_allowed_tokens_after_healed_indentation(engine):
    tok = engine.tokenizer
    allowed = {tok.token_bytes(i) for i in engine._allowed(b"\n    ")}
    assert b"\n    " in allowed and b"\n   " in allowed and b"\n" in allowed
    assert not any(t.startswith(b"\n     ") for t in allowed)  # five or more spaces: re-indents
    assert b" return" in {tok.token_bytes(i) for i in engine._allowed(b" ")}


def test_suggestion_on_an_indented_blank_line_starts_with_code(engine):
    """What VS Code showed: on an auto-indented line, Tab must accept, not indent once more."""
    service = CompletionService(engine, Options(model="bundled", max_new_tokens=16))
    text = "def fibonacci(n):\n    "
    result = service.complete(text, len(text), doc="f.py", typeahead=False)
    assert result is not None and result.text
    assert not result.text[0].isspace()
