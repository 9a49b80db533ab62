"""Regression tests for bugs the reliability work found in other modules (one test per fix)."""

from __future__ import annotations

from santa_lsp.engine.tokenizer import Tokenizer


def test_lone_surrogates_encode(tiny_tokenizer):
    """JSON lets a client send "\\ud83d" alone; `tokenizers` refused such strings with a TypeError,
    so every completion in that document failed. Each lone surrogate now encodes as "?"."""
    tok = Tokenizer(tiny_tokenizer)
    assert tok.encode("x = '\ud83d'") == tok.encode("x = '?'")
    assert tok.encode("\udc0d") == tok.encode("?")


def test_service_completes_beside_a_lone_surrogate(tiny_model_dir):
    from santa_lsp.config import Options
    from santa_lsp.engine import load_engine
    from santa_lsp.service import CompletionService

    opts = Options(model=str(tiny_model_dir), max_new_tokens=4)
    service = CompletionService(load_engine(opts, allow_download=False).engine, opts)
    text = "s = '\ud83d'\nprint("
    result = service.complete(text, len(text), doc="surrogate")
    assert result is not None and result.text


def test_repetition_check_reads_only_the_end_of_a_huge_line():
    """The repetition rule ran a backtracking regex over the whole cursor line: 2 s per
    completion at the end of a 1 MB line. It reads the line's last 200 characters now."""
    import time

    from santa_lsp import context, postprocess

    text = "y = [" + "1, " * 350_000
    ctx = context.analyze(text, len(text), "single-line")
    t0 = time.perf_counter()
    degenerate = postprocess.clean("foo, foo, foo, foo, foo, foo", ctx)
    fine = postprocess.clean("2, 3]", ctx)
    assert time.perf_counter() - t0 < 1.0
    assert degenerate.text == "" and fine.text.startswith("2, 3")
