"""The perfect-model replay over real files (issue 12): a bounded slice runs in CI.

The "model" writes the true text of real files nobody here wrote (Python's standard library,
JavaScript from npm, Apache Java), through the real tokenizer, prompt builder, stop rules,
token-healing constraint and post-processing; every suggestion that is not exactly the hidden
text is the pipeline's fault. The full table: `python -m benchmarks.replay` (README).
"""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks import replay
from santa_lsp.engine.generate import GenerationParams
from santa_lsp.engine.hub import BUNDLED_DIR
from santa_lsp.engine.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def bundled_tokenizer() -> Tokenizer:
    return Tokenizer(BUNDLED_DIR / "tokenizer.json", "bundled")


@pytest.fixture(scope="module")
def results():
    return replay.run(replay.default_files(), per_kind=3, seed=1)


def test_the_slice_covers_every_language_kind_and_variant(results):
    seen = Counter((r.case.language, r.case.kind, r.variant) for r in results)
    for language in ("python", "javascript", "java"):
        for kind in replay.KINDS:
            for variant in replay.VARIANTS:
                assert seen[(language, kind, variant)] >= 3, (language, kind, variant)


@pytest.mark.parametrize("variant, floor", [("eot", 0.99), ("run-on", 0.97), ("retype", 0.97), ("extra-lines", 0.97)])
def test_a_perfect_model_gives_exact_suggestions(results, variant, floor):
    rate = replay.exact_rate(results, variant)
    misses = [(r.case.kind, r.case.truth, r.text) for r in results if r.variant == variant and r.outcome != "exact"]
    assert rate >= floor, misses[:10]


def test_accepting_never_doubles_and_nothing_starts_with_blank_lines(results):
    for r in results:
        assert r.outcome != "long", (r.case.kind, r.variant, r.case.truth, r.text)
        assert not r.text.startswith("\n\n") and not (r.text[:1] == "\n" and not r.case.truth.startswith("\n"))


def test_replay_engine_honours_healing_stop_and_the_token_limit(bundled_tokenizer):
    engine = replay.ReplayEngine(bundled_tokenizer)
    asked: list[str] = []

    def stop(ids: list[int]) -> bool:
        asked.append(bundled_tokenizer.decode(ids))
        return False

    engine.will_write("urn value\n", eot=True)
    out = engine.generate([1, 2, 3], GenerationParams(max_new_tokens=64, forced_text="ret", stop=stop))
    assert bundled_tokenizer.decode(out.ids) == "return value\n" and out.stop_reason == "eot"
    assert all(text.startswith("ret") for text in asked)  # stop is asked once the healed text is out
    engine.will_write("x = 1\n" * 50, eot=False)
    out = engine.generate([1, 2, 3], GenerationParams(max_new_tokens=8))
    assert len(out.ids) == 8 and out.stop_reason == "length"
    engine.will_write("a\nb\n", eot=True)
    out = engine.generate([1], GenerationParams(stop=lambda ids: "\n" in bundled_tokenizer.decode(ids)))
    assert bundled_tokenizer.decode(out.ids) == "a\n" and out.stop_reason == "stop"


def test_cases_hide_what_each_cursor_kind_says(bundled_tokenizer):
    text = (
        "def area(width, height):\n"
        "    if width < 0 or height < 0:\n"
        "        raise ValueError('negative size')\n"
        "    return width * height\n"
    )
    cases = {c.kind: c for c in replay.make_cases(text, "shapes.py", 1, 0, bundled_tokenizer)}
    body = cases["block-body"]
    # The body after an opener, from its first line's indentation (left in place, as an editor
    # indents the empty line) to the end of its last line.
    assert body.document[: body.start].endswith((":\n    ", ":\n        "))
    assert body.truth in ("raise ValueError('negative size')",
                          "if width < 0 or height < 0:\n        raise ValueError('negative size')\n    return width * height")
    assert cases["in-brackets"].document[cases["in-brackets"].start] in ")]"
    word = cases["inside-word"]
    assert word.document[word.start - 1].isalnum() and word.document[word.start].isalnum()
    for case in cases.values():
        assert case.document[: case.start] + case.truth + case.document[case.start :] == text
        assert replay.score(case, case.truth, 0) == "exact"
        assert replay.score(case, "", 0) == "empty"
        assert replay.score(case, case.truth + ")", 0) == "long"
