"""Token healing on real byte-level BPE tokenizers: what the prompt drops, and that the engine
regenerates exactly that text before anything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from santa_lsp.engine import Engine, GenerationParams
from santa_lsp.engine.model import PRESETS, GPTBigCode, init_random
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.prompt import MAX_HEAL_CHARS, PromptBuilder

BUNDLED_TOKENIZER = Path(__file__).resolve().parents[2] / "santa_lsp" / "models" / "bundled" / "tokenizer.json"
PROGRAM = ("class Point:\n    def norm(self):\n        return (self.x ** 2 + self.y ** 2) ** 0.5\n\n"
           "for i in range(10):\n")


@pytest.fixture(scope="module", params=["trained", "bundled"])
def tok(request, tiny_tokenizer) -> Tokenizer:
    """The byte-level BPE trained by conftest, and the bundled model's when it is there."""
    if request.param == "bundled":
        if not BUNDLED_TOKENIZER.is_file():
            pytest.skip("no bundled model in this checkout")
        return Tokenizer(BUNDLED_TOKENIZER)
    return Tokenizer(tiny_tokenizer)


def random_engine(tok: Tokenizer) -> Engine:
    """A random tiny model over the whole vocabulary of `tok`: its output owes nothing to the text."""
    vocab = -(-tok.vocab_size // 128) * 128
    config = PRESETS["tiny"].__class__(**{**PRESETS["tiny"].__dict__, "vocab_size": vocab})
    model = init_random(GPTBigCode(config), seed=1)
    with torch.no_grad():
        model.wte.weight.mul_(50)
    return Engine(model.eval(), tok)


@pytest.mark.parametrize("typed", ["    pri", "    print(self.no", "    total += i", "    x = "])
def test_healing_backs_up_to_a_clean_boundary(tok, typed):
    text = PROGRAM + typed
    prompt = PromptBuilder(tok).build(text, len(text), 200, "spm")
    assert prompt.healed and text.endswith(prompt.healed) and len(prompt.healed) <= MAX_HEAL_CHARS
    word = re.search(r"[\w$]*$", typed).group()
    assert prompt.healed.endswith(word)  # the whole partial word is regenerated, not its tail
    # The prompt's prefix ends exactly where the healed text begins.
    assert tok.decode(prompt.ids).endswith(text[: len(text) - len(prompt.healed)][-20:])
    # The removed text, re-encoded with what comes next, crosses no token boundary the prompt keeps.
    kept = tok.encode(text[: len(text) - len(prompt.healed)])
    assert tok.encode(text)[: len(kept) - 1] == kept[:-1]


def test_no_healing_after_a_newline_or_punctuation(tok):
    for text in (PROGRAM, "print(", "items = ["):
        prompt = PromptBuilder(tok).build(text, len(text), 200, "spm")
        assert prompt.healed == ""
    assert PromptBuilder(tok).build(PROGRAM + "    pri", len(PROGRAM) + 7, 200, heal=False).healed == ""


def test_healed_word_keeps_its_leading_space_token(tiny_tokenizer):
    tok = Tokenizer(tiny_tokenizer)
    text = PROGRAM + "    pri"
    assert PromptBuilder(tok).build(text, len(text), 200).healed == " pri"  # ` print` is one token


def test_constraint_forces_the_healed_text_first(tok):
    engine = random_engine(tok)
    text = PROGRAM + "    print(self.no"
    prompt = PromptBuilder(tok).build(text, len(text), 200, "spm")
    free = engine.generate(prompt.ids, GenerationParams(max_new_tokens=8), reuse=False)
    assert not tok.decode(free.ids).startswith(prompt.healed)  # the random model would not write it
    forced = engine.generate(prompt.ids, GenerationParams(max_new_tokens=8, forced_text=prompt.healed), reuse=False)
    out = tok.decode(forced.ids)
    assert out.startswith(prompt.healed) and len(out) > len(prompt.healed)
    # Every token while the constraint is active lies on the healed text.
    consumed = b""
    target = prompt.healed.encode()
    for token in forced.ids:
        if len(consumed) >= len(target):
            break
        piece = tok.token_bytes(token)
        assert target[len(consumed):].startswith(piece) or piece.startswith(target[len(consumed):])
        consumed += piece
