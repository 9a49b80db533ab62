"""Generation with KV-cache reuse yields exactly the tokens of generation from scratch."""

from __future__ import annotations

import pytest

from santa_lsp.config import Options
from santa_lsp.engine import Engine
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.engine.weights import load_checkpoint
from santa_lsp.service import CompletionService

BODY = '''import os

def walk(root):
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path):
            yield from walk(path)
        else:
            yield path


class Counter:
    def __init__(self):
        self.counts = {}

'''
TAIL = '''

def main():
    for path in walk("."):
        print(path)
'''


def _service(model_dir, order: str) -> CompletionService:
    engine = Engine(load_checkpoint(model_dir, "tiny"), Tokenizer(model_dir / "tokenizer.json"), cache_slots=2)
    # Without token healing: healing keeps the prompt unchanged while a word is typed, which
    # would hide the per-keystroke cost of PSM these tests measure.
    opts = Options(model=str(model_dir), max_new_tokens=6, fim_order=order, mode="multi-line", token_healing=False)
    return CompletionService(engine, opts)


def _edits():
    """(doc, text, cursor) states a user produces: typing, backspace, far edit, doc switch."""
    text, cursor = BODY + TAIL, len(BODY)
    states = []
    for ch in "    def add(self, key):\n        self.":
        text, cursor = text[:cursor] + ch + text[cursor:], cursor + 1
        states.append(("a.py", text, cursor))
    for _ in range(3):  # backspaces
        text, cursor = text[: cursor - 1] + text[cursor:], cursor - 1
        states.append(("a.py", text, cursor))
    text, cursor = "# header comment\n" + text, cursor + 17  # an edit far above the cursor
    states.append(("a.py", text, cursor))
    other = "function greet(name) {\n  return "
    states.append(("b.js", other, len(other)))  # switching documents and back
    states.append(("a.py", text, cursor))
    long_text = "x = 1\n" * 400 + BODY  # longer than the 256-position window
    for n in range(3):
        states.append(("c.py", long_text + "y" * n, len(long_text) + n))
    return states


@pytest.mark.parametrize("order", ["spm", "psm"])
def test_reuse_gives_identical_tokens(tiny_model_dir, order):
    reusing, scratch = _service(tiny_model_dir, order), _service(tiny_model_dir, order)
    reused_any = False
    for doc, text, cursor in _edits():
        a = reusing.complete(text, cursor, doc=doc, postprocessing=False)
        b = scratch.complete(text, cursor, doc=doc, postprocessing=False, reuse=False)
        assert (a is None) == (b is None)
        if a is None:
            continue
        assert a.generation.ids == b.generation.ids, (doc, cursor)
        assert b.generation.reused_tokens == 0
        reused_any |= a.generation.reused_tokens > 0
    assert reused_any


def test_spm_typing_computes_few_tokens_psm_many(tiny_model_dir):
    """SPM typing only appends to the prompt; PSM recomputes the whole suffix each keystroke."""
    computed = {}
    for order in ("spm", "psm"):
        service = _service(tiny_model_dir, order)
        text, cursor = BODY + TAIL, len(BODY)
        service.complete(text, cursor, doc="a.py", postprocessing=False)
        per_key = []
        for ch in "    def add(self, key):":
            text, cursor = text[:cursor] + ch + text[cursor:], cursor + 1
            per_key.append(service.complete(text, cursor, doc="a.py", postprocessing=False).generation.computed_tokens)
        computed[order] = sum(per_key) / len(per_key)
    suffix_tokens = len(Tokenizer(tiny_model_dir / "tokenizer.json").encode(TAIL))
    assert computed["spm"] <= 4
    assert computed["psm"] >= 0.8 * suffix_tokens
    assert computed["psm"] >= 5 * computed["spm"]


def test_cache_slots_are_bounded_lru(tiny_model_dir):
    service = _service(tiny_model_dir, "spm")
    for i in range(5):
        text = f"def f{i}(x):\n    return "
        service.complete(text, len(text), doc=f"d{i}.py", postprocessing=False)
    assert len(service.engine._slots) == 2
    assert {s.key for s in service.engine._slots} == {"d3.py", "d4.py"}
