"""Speculative decoding from the document: drafts checked in one pass never change the answer."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.replay import default_files
from santa_lsp.config import Options
from santa_lsp.engine import GenerationParams, load_engine
from santa_lsp.prompt import PromptBuilder


@pytest.fixture(scope="module")
def engine():
    return load_engine(Options(model="bundled", device="cpu")).engine


def prompts(engine, count: int = 12):
    builder = PromptBuilder(engine.tokenizer)
    out = []
    for path in default_files()[:6]:
        text = path.read_text()
        for k in range(1, count // 6 + 2):
            cursor = text.find("\n", len(text) * k // (count // 6 + 2)) + 1
            out.append(builder.build(text, cursor, 900, "spm", 0.25, str(path), heal=False).ids)
    return out[:count]


def test_drafts_change_nothing_and_are_used(engine):
    params = GenerationParams(max_new_tokens=48, exact_length=True)
    drafted = accepted = 0
    for ids in prompts(engine):
        plain = engine.generate(ids, dataclasses.replace(params, draft_tokens=0), reuse=False)
        fast = engine.generate(ids, params, reuse=False)
        assert fast.ids == plain.ids and fast.stop_reason == plain.stop_reason
        assert plain.drafted == 0
        drafted, accepted = drafted + fast.drafted, accepted + fast.accepted
    assert drafted > 0 and 0 < accepted <= drafted


def test_stop_rules_and_limits_hold_inside_a_draft(engine):
    ids = prompts(engine, 1)[0]
    full = engine.generate(ids, GenerationParams(max_new_tokens=40, draft_tokens=0, exact_length=True), reuse=False)
    for limit in (1, 5, 17):
        got = engine.generate(ids, GenerationParams(max_new_tokens=limit, exact_length=True), reuse=False)
        assert got.ids == full.ids[:limit]
    seen = []

    def stop(out):
        seen.append(len(out))
        return len(out) >= 9

    got = engine.generate(ids, GenerationParams(max_new_tokens=40, stop=stop, exact_length=True), reuse=False)
    assert got.ids == full.ids[:9] and got.stop_reason == "stop" and seen == list(range(1, 10))


def test_the_cache_stays_right_after_rejected_drafts(engine):
    # The next request reuses the slot: K/V of rejected draft tokens must not be taken as valid.
    ids = prompts(engine, 2)
    params = GenerationParams(max_new_tokens=32, exact_length=True)
    first = engine.generate(ids[0], params, key="doc")
    again = engine.generate(ids[0] + first.ids[:5], params, key="doc")
    scratch = engine.generate(ids[0] + first.ids[:5], dataclasses.replace(params, draft_tokens=0), key="x", reuse=False)
    assert again.reused_tokens > len(ids[0]) and again.ids == scratch.ids


def test_draft_rate_turns_rejected_drafting_mostly_off_and_recovers():
    from santa_lsp.engine.generate import DraftRate

    rate = DraftRate()
    for _ in range(10):  # before EVIDENCE drafted tokens, always draft
        assert rate.budget(6) == 6
        rate.record(6, 0)
    budgets = [rate.budget(6) for _ in range(64)]
    # rejected: only the probes draft, and only a few tokens
    assert sorted(set(budgets)) == [0, DraftRate.PROBE_TOKENS]
    assert budgets.count(DraftRate.PROBE_TOKENS) == 64 // DraftRate.PROBE_EVERY
    for _ in range(40):  # the model agrees again (probes measure it): drafting comes back
        rate.record(2, 2)
    assert all(rate.budget(6) == 6 for _ in range(16))


def test_engine_drafts_less_when_drafts_are_rejected(engine):
    """A teacher that copies two tokens of the document at a time from ever other places: every
    draft (the document's continuation) is rejected. After the evidence, few passes draft, and
    the tokens are still exactly the teacher's."""
    ids = prompts(engine, 1)[0]
    engine.drafts = type(engine.drafts)()  # a fresh rate for this test
    teacher = [t for start in range(50, 50 + 20 * 37, 37) for t in ids[start:start + 2]]
    params = GenerationParams(max_new_tokens=len(teacher), exact_length=True, teacher=teacher)
    first = engine.generate(ids, params, reuse=False)
    assert first.ids == teacher
    later = [engine.generate(ids, params, reuse=False) for _ in range(4)]
    assert all(r.ids == teacher for r in later)
    assert first.drafted > 0
    assert sum(r.drafted for r in later) < first.drafted * len(later) / 2
