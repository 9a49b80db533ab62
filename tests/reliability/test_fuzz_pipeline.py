"""Property-based fuzzing of the pipeline's pure stages with hypothesis: positions, context,
prompt, post-processing, options, the typing-ahead cache, the CLI's file reading, and the
whole service on a tiny real model.

No uncaught exception is allowed anywhere; the properties below are the invariants the
server relies on. SANTA_FUZZ_EXAMPLES sets the examples per test (CI: a bounded slice;
RELIABILITY.md: the full run).
"""

from __future__ import annotations

import string

import pytest
from reliability_helpers import FUZZ_EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from santa_lsp import context as ctxmod
from santa_lsp import postprocess
from santa_lsp.cli import offset_of, read_source
from santa_lsp.config import MODES, Options
from santa_lsp.errors import SantaError
from santa_lsp.lsp import positions
from santa_lsp.prompt import PromptBuilder
from santa_lsp.typeahead import TypeaheadCache

# The CI slice is derandomized (the same cases every run, no flaky discoveries); full runs explore.
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=FUZZ_EXAMPLES <= 100,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# What editors really send: code, every kind of line break and blank, control characters,
# non-ASCII letters, astral characters (surrogate pairs in UTF-16), and lone surrogates
# (JSON can carry "\ud800"; Python strings then hold them).
ODD = ["\n", "\r\n", "\r", "\t", " ", "\0", "\x0b", "\x0c", "\x1b", "\x7f", "\u2028", "\u00e9", "\u0301", "\U0001f40d",
       "\U0001f600", "\ufeff", "\ud83d", "\udc0d", "<fim-prefix>", "<|endoftext|>", "def ", "    ", "(", ")", "{", "}",
       ":", '"', "'", "#", "//", "`", "\\"]
CHARS = st.one_of(st.sampled_from(list(string.printable)), st.sampled_from(ODD), st.characters())
TEXT = st.lists(st.one_of(CHARS, st.sampled_from(ODD)), max_size=300).map("".join)
ENCODINGS = st.sampled_from([positions.UTF8, positions.UTF16, positions.UTF32])


def text_and_cursor():
    return TEXT.flatmap(lambda t: st.tuples(st.just(t), st.integers(0, len(t))))


# -- positions ----------------------------------------------------------------------------------
@FUZZ
@given(TEXT, st.integers(-3, 40), st.integers(-3, 400), ENCODINGS)
def test_offset_at_is_total(text, line, character, encoding):
    offset = positions.offset_at(text, line, character, encoding)
    assert offset is None or 0 <= offset <= len(text)


@FUZZ
@given(text_and_cursor(), ENCODINGS)
def test_position_round_trip(tc, encoding):
    text, offset = tc
    line, character = positions.position_at(text, offset, encoding)
    assert line >= 0 and character >= 0
    back = positions.offset_at(text, line, character, encoding)
    if 0 < offset < len(text) and text[offset - 1 : offset + 1] == "\r\n":
        assert back == offset - 1  # between \r and \n is not a position: it maps to the line's end
    else:
        assert back == offset


# -- context and post-processing ---------------------------------------------------------------
@FUZZ
@given(text_and_cursor(), st.sampled_from(MODES), TEXT)
def test_context_and_postprocess_are_total(tc, mode, raw):
    text, cursor = tc
    ctx = ctxmod.analyze(text, cursor, mode)
    if ctx is None:
        return
    assert ctx.mode in ("single-line", "multi-line")
    assert ctx.line_prefix + ctx.line_suffix in text
    _ = ctx.indent, ctx.opens_line, ctx.following_lines, ctx.previous_line
    postprocess.stop_early(raw, ctx)
    s = postprocess.clean(raw, ctx)
    assert not any(stop in s.text for stop in postprocess.STOP_STRINGS)
    assert 0 <= s.replace_len <= len(ctx.line_suffix)
    if ctx.mode == "single-line" and not ctx.opens_line:
        assert "\n" not in s.text


# -- prompts --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    from santa_lsp.engine.tokenizer import Tokenizer

    return Tokenizer(tiny_tokenizer)


@FUZZ
@given(text_and_cursor(), st.integers(0, 600), st.sampled_from(["spm", "psm"]), st.floats(0.0, 0.9),
       st.lists(st.tuples(st.integers(0, 10**6), TEXT), max_size=3))
def test_prompt_fits_its_budget(tokenizer, tc, budget, order, share, edits):
    """The prompt never exceeds its token budget (8 tokens at least), whatever the text, and the
    remembered window survives arbitrary edits between calls."""
    text, cursor = tc
    builder = PromptBuilder(tokenizer)
    for step in range(len(edits) + 1):
        prompt = builder.build(text, cursor, budget, order, share, doc="d")
        assert len(prompt.ids) <= max(budget, 11)
        assert 0 <= prompt.prefix_start <= cursor <= prompt.suffix_end <= len(text)
        assert text[:cursor].endswith(prompt.healed)
        if step < len(edits):
            at, insert = edits[step]
            at %= len(text) + 1
            text = text[:at] + insert + text[at:]
            cursor = at + len(insert)


# -- options and the typing-ahead cache -------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)
OPTION_KEYS = st.sampled_from(["model", "maxNewTokens", "max_new_tokens", "mode", "fimOrder", "contextBudget",
                               "suffixShare", "temperature", "topP", "debounceMs", "cacheSlots", "threads", "enable",
                               "device", "dtype", "revision", "santa", "bogus"])


@FUZZ
@given(st.one_of(JSON, st.dictionaries(OPTION_KEYS, JSON, max_size=6)))
def test_options_never_raise(raw):
    opts, errors = Options.from_dict(raw)
    assert isinstance(errors, list)
    again, errors2 = Options.from_dict({k: v for k, v in vars(opts).items()})
    assert errors2 == [] and again == opts  # whatever was accepted is valid


@FUZZ
@given(st.lists(st.tuples(text_and_cursor(), TEXT, st.booleans()), max_size=6))
def test_typeahead_cache_is_total(ops):
    cache = TypeaheadCache(capacity=4, window=32)
    for (text, cursor), suggestion, store in ops:
        if store:
            cache.store("d", text, cursor, "k", suggestion, 0, "single-line")
        hit = cache.lookup("d", text, cursor, "k")
        assert hit is None or hit.text.strip()
    assert len(cache._entries) <= 4


# -- the CLI's file reading -------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400), st.integers(-2, 30), st.integers(-2, 200))
def test_cli_reads_any_file(tmp_path_factory, data, line, column):
    path = tmp_path_factory.mktemp("cli") / "f.py"
    path.write_bytes(data)
    try:
        text = read_source(path)
        cursor = offset_of(text, line, column)
    except SantaError:
        return
    assert 0 <= cursor <= len(text)


# -- the whole service on a real (tiny) model ---------------------------------------------------------
@pytest.fixture(scope="module")
def service(tiny_model_dir):
    from santa_lsp.engine import load_engine
    from santa_lsp.service import CompletionService

    opts = Options(model=str(tiny_model_dir), max_new_tokens=4)
    return CompletionService(load_engine(opts, allow_download=False).engine, opts)


@FUZZ
@given(text_and_cursor(), st.sampled_from(MODES), st.sampled_from(["spm", "psm"]), st.sampled_from(["a", "b"]))
def test_service_is_total(service, tc, mode, order, doc):
    import dataclasses

    text, cursor = tc
    opts = dataclasses.replace(service.options, mode=mode, fim_order=order)
    result = service.complete(text, cursor, doc=doc, options=opts)
    if result is not None:
        assert result.cursor == cursor <= result.replace_end <= len(text)
