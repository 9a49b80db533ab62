"""The shared pipeline: healing returns text from the cursor, post-processing and ranges, the
typing-ahead cache and its statistics."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from santa_lsp.config import Options
from santa_lsp.engine import Engine
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.engine.weights import load_checkpoint
from santa_lsp.lsp.scheduler import Scheduler
from santa_lsp.service import CompletionService


def accept(text: str, c) -> str:
    return text[: c.cursor] + c.text + text[c.replace_end :]


def test_healed_text_is_regenerated_and_the_suggestion_starts_at_the_cursor(scripted, tok):
    text = "for i in range(10):\n    pri"
    service = scripted(lambda prompt: " print(i)\n    x = 1\n")
    c = service.complete(text, len(text))
    assert c.healed == " pri"
    assert tok.decode(c.generation.ids).startswith(" pri")
    assert c.raw.startswith("nt(i)")  # the raw output after the healed text
    assert c.text == "nt(i)" and accept(text, c) == "for i in range(10):\n    print(i)"


def test_real_model_with_healing_returns_text_from_the_cursor(tiny_model_dir):
    tok = Tokenizer(tiny_model_dir / "tokenizer.json")
    engine = Engine(load_checkpoint(tiny_model_dir, "tiny"), tok)
    service = CompletionService(engine, Options(max_new_tokens=8))
    text = "def norm(self):\n    return self.x\n\nfor i in range(10):\n    pri"
    c = service.complete(text, len(text), postprocessing=False)
    generated = tok.decode(c.generation.ids)
    assert c.healed and generated.startswith(c.healed)
    assert c.raw == generated[len(c.healed):]
    no_healing = Options(max_new_tokens=8, token_healing=False)
    off = service.complete(text, len(text), postprocessing=False, options=no_healing)
    assert off.healed == "" and off.raw == tok.decode(off.generation.ids)


def test_accepting_leaves_no_doubled_characters(scripted):
    text = 'names = ["ada", "bob"]\nprint(|)\nprint("done")\n'
    cursor = text.index("|")
    text = text.replace("|", "")
    for output, expected in [
        ("len(names))\n", 'print(len(names))'),  # the model re-typed the auto-closed bracket
        ("names[0]) or print(names[1])\n", 'print(names[0]) or print(names[1])'),  # absorbs `)`
    ]:
        c = scripted(lambda prompt, o=output: o).complete(text, cursor)
        assert accept(text, c).split("\n")[1] == expected


def test_multi_line_suggestion_stops_before_the_code_that_follows(scripted):
    text = "def mean(xs):\n    \n\nprint(mean([1, 2]))\n"
    cursor = text.index("    \n") + 4
    out = "total = sum(xs)\n    return total / len(xs)\n\n\nprint(mean([1, 2]))\n"
    c = scripted(lambda prompt: out).complete(text, cursor)
    assert c.mode == "multi-line"
    assert c.text == "total = sum(xs)\n    return total / len(xs)"
    assert c.generation.stop_reason == "stop"  # decoding ended as soon as the cut was certain


def test_typing_along_is_answered_without_the_model(scripted):
    text = "def area(w, h):\n    \n"
    cursor = len(text) - 1
    service = scripted(lambda prompt: "return w * h\n")
    first = service.complete(text, cursor, doc="a.py")
    assert first.text == "return w * h" and first.source == "model"
    calls = service.engine.calls
    for n in range(1, 6):  # "r", "re", ... typed one by one
        t = text[:cursor] + "retur"[:n] + text[cursor:]
        c = service.complete(t, cursor + n, doc="a.py")
        assert c.source == "typeahead" and c.text == "return w * h"[n:] and c.generation is None
        assert accept(t, c) == "def area(w, h):\n    return w * h\n"
    t = text[:cursor] + "re" + text[cursor:]  # backspace
    assert service.complete(t, cursor + 2, doc="a.py").text == "turn w * h"
    assert service.engine.calls == calls
    t = text[:cursor] + "pass" + text[cursor:]  # something else: the model runs
    assert service.complete(t, cursor + 4, doc="a.py").source == "model"
    stats = service.stats
    assert stats["typeahead_hits"] == 6 and stats["typeahead_misses"] == 2
    assert stats["typeahead_hit_rate"] == pytest.approx(6 / 8)
    assert stats["model_runs"] == 2 and stats["requests"] == 8


def test_cache_is_keyed_by_options_and_skipped_when_asked(scripted):
    text = "x = \n"
    service = scripted(lambda prompt: "compute(1)\n")
    service.complete(text, 4)
    assert service.complete(text, 4).source == "typeahead"
    assert service.complete(text, 4, options=Options(fim_order="psm")).source == "model"
    assert service.complete(text, 4, typeahead=False).source == "model"
    assert service.complete(text, 4, postprocessing=False).source == "model"
    service.forget("")
    assert service.complete(text, 4).source == "model"


def test_inside_a_word_the_rest_of_the_word_is_not_doubled(scripted):
    # The model fills the hole and runs on into the rest of the word: only the hole is shown.
    service = scripted(lambda prompt: "ser_name(x)\n")
    c = service.complete("get_u_name(x)\n", 5)
    assert (c.text, c.replace_end) == ("ser", 5)
    assert service.complete("def f():\n    return 1\n", 11) is None  # inside indentation: no request
    assert service.engine.calls == 1


def test_prefetch_answers_the_accepted_state_at_once(scripted):
    text = "def area(w, h):\n    \n"
    cursor = len(text) - 1
    replies = iter(["return w * h\n", "  # the area\n"])
    service = scripted(lambda prompt: next(replies), prefetch=True)
    shown = service.complete(text, cursor, doc="a.py")
    assert service.prefetch(text, shown, doc="a.py")  # the server runs it as a background job
    assert service.stats["prefetches"] == 1
    accepted = accept(text, shown)
    nxt = service.complete(accepted, cursor + len(shown.text), doc="a.py")
    assert (nxt.source, nxt.text) == ("typeahead", "  # the area") and service.engine.calls == 2


def test_a_real_request_cancels_the_prefetch(scripted, monkeypatch):
    service = scripted(lambda prompt: "return w * h\n", prefetch=True)
    engine, real_generate = service.engine, service.engine.generate
    started = threading.Event()

    def generate(prompt, params, key="", cancelled=lambda: False, reuse=True):
        if "return w" in engine.tokenizer.decode(prompt):  # the accepted state: the prefetch
            started.set()
            while not cancelled():  # a long decode, checking for cancellation at each step
                threading.Event().wait(0.001)
            return dataclasses.replace(real_generate(prompt, params, key, cancelled, reuse), stop_reason="cancelled")
        return real_generate(prompt, params, key, cancelled, reuse)

    monkeypatch.setattr(engine, "generate", generate)
    scheduler = Scheduler()
    answers: dict[str, object] = {}
    finished = threading.Event()

    def done(job, result, error):
        answers[job.doc] = result
        finished.set() if job.doc == "b.py" else None

    text = "def area(w, h):\n    \n"
    shown = service.complete(text, len(text) - 1, doc="a.py")
    prefetching = scheduler.submit("a.py", lambda c: service.prefetch(text, shown, doc="a.py", cancelled=c), done,
                                   background=True)
    assert started.wait(10)
    other = "x = \n"
    scheduler.submit("b.py", lambda c: service.complete(other, 4, doc="b.py", cancelled=c,
                                                       options=Options(prefetch=False)), done)
    assert finished.wait(10) and answers["b.py"].text == "return w * h"
    assert prefetching.cancelled() and answers["a.py"] is False and service.stats["prefetches"] == 0
    scheduler.stop()
