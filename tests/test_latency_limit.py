"""maxLatencyMs: past the time limit, decoding stops at the next line break and the complete
lines are shown. Real bundled model on the CPU."""

from __future__ import annotations

import dataclasses

import pytest

from santa_lsp.config import AUTO_LATENCY_MS, Options
from santa_lsp.engine.hub import BUNDLED_DIR

TEXT = "def fibonacci(n):\n    "
needs_bundled = pytest.mark.skipif(not (BUNDLED_DIR / "config.json").is_file(), reason="no bundled model")


def test_option_values():
    assert Options().max_latency_ms == -1
    assert Options().latency_limit_ms(local_cpu=True) == AUTO_LATENCY_MS == 1000
    assert Options().latency_limit_ms(local_cpu=False) == 0  # CUDA, an endpoint
    assert Options(max_latency_ms=0).latency_limit_ms(True) == 0
    assert Options(max_latency_ms=250).latency_limit_ms(False) == 250
    opts, errors = Options.from_dict({"maxLatencyMs": 300})
    assert opts.max_latency_ms == 300 and not errors
    for bad in (-2, 1.5, "fast", True):
        opts, errors = Options.from_dict({"maxLatencyMs": bad})
        assert opts.max_latency_ms == -1 and len(errors) == 1 and "maxLatencyMs" in errors[0]


@pytest.fixture(scope="module")
def engine():
    from santa_lsp.engine import load_engine

    return load_engine(Options(model="bundled", device="cpu")).engine


@needs_bundled
def test_limit_stops_at_a_line_break(engine):
    from santa_lsp.service import CompletionService

    opts = Options(model="bundled", max_new_tokens=64, mode="multi-line")
    full = CompletionService(engine, dataclasses.replace(opts, max_latency_ms=0), interactive=True).complete(
        TEXT, len(TEXT), doc="a.py", typeahead=False)
    assert full is not None and "\n" in full.text.strip() and not full.time_limited
    # A limit already spent when decoding starts: the first complete line, nothing more.
    cut = CompletionService(engine, dataclasses.replace(opts, max_latency_ms=1), interactive=True).complete(
        TEXT, len(TEXT), doc="a.py", typeahead=False)
    assert cut is not None and cut.time_limited
    assert cut.text and "\n" not in cut.text.strip()
    assert full.text.startswith(cut.text.rstrip())
    assert cut.generation.generated_tokens < full.generation.generated_tokens


@needs_bundled
def test_automatic_limit_only_for_interactive_services(engine):
    from santa_lsp.service import CompletionService

    assert CompletionService(engine, Options(), interactive=True)._local_cpu()
    assert not CompletionService(engine, Options())._local_cpu()  # evaluation, benchmarks: no limit
