"""stats.py: one registry, reported whole; one percentile helper."""

from __future__ import annotations

import pytest

from santa_lsp.lsp.status import ModelStatus, status_report
from santa_lsp.config import camel
from santa_lsp.stats import COUNTERS, PEAKS, Stats, percentile


def test_every_counter_reaches_the_status_report():
    stats = Stats()
    for n, name in enumerate(COUNTERS, 1):
        stats.add(name, n)
    reported = status_report(ModelStatus(), stats)["stats"]
    for n, name in enumerate(COUNTERS, 1):
        assert reported[camel(name)] == n
    assert {camel(name) for name in PEAKS} <= set(reported)
    assert set(reported["latencyMs"]) == {"p50", "p95", "p99"}


def test_an_undeclared_name_is_an_error_not_a_new_field():
    with pytest.raises(KeyError):
        Stats().add("request")
    with pytest.raises(KeyError):
        Stats().peak("requests", 3)


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(values, p) for p in (0, 20, 50, 90, 100)] == [1.0, 1.0, 3.0, 5.0, 5.0]
    assert percentile([], 50) is None


def test_latency_percentiles_and_hit_rate():
    stats = Stats()
    for ms in range(1, 101):
        stats.record_latency(float(ms))
    stats.add("typeahead_hits", 3)
    stats.add("typeahead_misses")
    snap = stats.snapshot()
    assert snap["latency_ms"] == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert snap["typeahead_hit_rate"] == 0.75
