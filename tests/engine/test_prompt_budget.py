"""FIM prompt layout, exact token budget, line-boundary cuts and prefix-window hysteresis."""

from __future__ import annotations

from santa_lsp.engine.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, Tokenizer
from santa_lsp.prompt import PromptBuilder

LINES = [f"    value_{i} = compute({i}, scale=2)\n" for i in range(300)]
TEXT = "def big():\n" + "".join(LINES[:150]) + "    \n" + "".join(LINES[150:])
CURSOR = TEXT.index("    \n", 100) + 4


def test_orders(tiny_tokenizer):
    tok = Tokenizer(tiny_tokenizer)
    builder = PromptBuilder(tok)
    text, cursor = "a = 1\nb = \nc = 3\n", 10
    pre, suf = tok.encode("a = 1\nb = "), tok.encode("\nc = 3\n")
    p, s, m = tok.ids[FIM_PREFIX], tok.ids[FIM_SUFFIX], tok.ids[FIM_MIDDLE]
    spm = builder.build(text, cursor, 200, "spm", heal=False)
    psm = builder.build(text, cursor, 200, "psm", heal=False)
    assert spm.ids == [p, s, *suf, m, *pre]
    assert psm.ids == [p, *pre, s, *suf, m]


def test_budget_is_exact_and_cuts_at_lines(tiny_tokenizer):
    tok = Tokenizer(tiny_tokenizer)
    for budget in (233, 600):
        prompt = PromptBuilder(tok).build(TEXT, CURSOR, budget, "spm", heal=False)
        assert len(prompt.ids) <= budget
        assert len(prompt.ids) >= budget * 0.4  # the budget is used, not wasted
        assert prompt.prefix_start == 0 or TEXT[prompt.prefix_start - 1] == "\n"
        assert prompt.suffix_end == len(TEXT) or TEXT[prompt.suffix_end - 1] == "\n"


def test_window_start_is_stable_while_typing(tiny_tokenizer):
    tok = Tokenizer(tiny_tokenizer)
    builder = PromptBuilder(tok)
    text, cursor, starts = TEXT, CURSOR, []
    for ch in "result = value_1 + value_2 + value_3\n    other = value_4 * value_5\n" * 3:
        text, cursor = text[:cursor] + ch + text[cursor:], cursor + 1
        starts.append(builder.build(text, cursor, 600, "spm", doc="d", heal=False).prefix_start)
    moves = [(a, b) for a, b in zip(starts, starts[1:]) if b != a]
    # 6 lines typed: the window moved rarely, forward, and by a large step (several lines at once).
    assert 1 <= len(moves) <= 2
    assert all(b > a and text.count("\n", a, b) >= 4 for a, b in moves)


def test_window_is_per_document(tiny_tokenizer):
    builder = PromptBuilder(Tokenizer(tiny_tokenizer))
    a = builder.build(TEXT, CURSOR, 200, "spm", doc="a", heal=False)
    short = "x = 1\ny = "
    b = builder.build(short, len(short), 200, "spm", doc="b", heal=False)
    assert b.prefix_start == 0
    assert builder.build(TEXT, CURSOR, 200, "spm", doc="a", heal=False).prefix_start == a.prefix_start


def test_single_huge_line_fits(tiny_tokenizer):
    text = "x = [" + "1, " * 5000
    prompt = PromptBuilder(Tokenizer(tiny_tokenizer)).build(text, len(text), 120, "spm", heal=False)
    assert 60 <= len(prompt.ids) <= 120
