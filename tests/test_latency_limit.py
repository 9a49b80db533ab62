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


def test_automatic_context_budget_values():
    """contextBudget 0: the model's room, capped at AUTO_CPU_BUDGET for a big model on this CPU."""
    from santa_lsp.config import AUTO_CPU_BUDGET

    assert AUTO_CPU_BUDGET == 1024
    assert Options().effective_budget(2048) == 2048 - 64
    assert Options().effective_budget(2048, slow_cpu=True) == 1024
    assert Options(max_new_tokens=1024).effective_budget(2048, slow_cpu=True) == 1024
    assert Options(max_new_tokens=1500).effective_budget(2048, slow_cpu=True) == 548  # the room is smaller
    assert Options(context_budget=1500).effective_budget(2048, slow_cpu=True) == 1500  # set: kept
    assert Options(context_budget=4000).effective_budget(2048) == 1984


@needs_bundled
def test_big_models_on_the_cpu_get_a_shorter_automatic_prompt(engine, monkeypatch):
    """The real service on a long file: the interactive service of a model at the size `dtype:
    auto` quantizes prompts with at most AUTO_CPU_BUDGET tokens; evaluation (not interactive), a
    small model or a set budget are not capped. The bundled model stands in for the big one (its
    context is 1,024 tokens: the threshold and the cap are lowered to fit it)."""
    from santa_lsp import config as config_mod
    from santa_lsp import service as service_mod
    from santa_lsp.service import CompletionService

    text = "".join(f"def helper_{i}(value, scale={i}):\n    return value * scale + {i}\n\n\n" for i in range(150))
    cursor = text.index("def helper_75")

    def prompt_tokens(svc):
        got = svc.complete(text, cursor, doc="long.py", typeahead=False)
        assert got is not None and got.generation is not None
        return got.generation.prompt_tokens

    opts = Options(model="bundled", max_new_tokens=4)
    monkeypatch.setattr(config_mod, "AUTO_CPU_BUDGET", 400)
    small = prompt_tokens(CompletionService(engine, opts, interactive=True))
    assert small > 600  # a small model: the whole room
    monkeypatch.setattr(service_mod, "AUTO_QUANTIZE_PARAMS", 0)
    assert 300 < prompt_tokens(CompletionService(engine, opts, interactive=True)) <= 400
    assert prompt_tokens(CompletionService(engine, opts)) == small
    assert prompt_tokens(CompletionService(engine, dataclasses.replace(opts, context_budget=600), interactive=True)) > 400
