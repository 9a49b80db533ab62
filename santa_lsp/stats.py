"""Every counter `santa.status` reports, in one registry, and the one percentile helper.

The server makes one `Stats` and hands it to each completion service it builds (and the
service to its typing-ahead cache), so the server, the pipeline and the cache count into the
same object, across model reloads, and the report is a snapshot of it: no merge, nothing
dropped. Names are declared once, in COUNTERS; counting an undeclared name is an error.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

LATENCY_WINDOW = 1000  # latencies kept for the percentiles

# name -> what it counts. The report's key is the name camelCased (`waited_for_load` -> `waitedForLoad`).
COUNTERS = {
    # Where a request enters: the server, or a CompletionService used alone (CLI, evaluation).
    "requests": "completion requests",
    "suggestions": "non-empty answers",
    # The server.
    "completed": "inference ran to the end (suggestion or not)",
    "cancelled": "superseded by a newer request, the document changed, or $/cancelRequest",
    "skipped": "answered empty without inference: loading, disabled, unknown document, bad position",
    "errors": "requests that failed",
    "waited_for_load": "arrived while the model loaded, and waited for it",
    # The pipeline (service.py, typeahead.py).
    "model_runs": "answers computed by the model (not cancelled)",
    "prefetches": "suggestions prefetched for the accepted state (completed)",
    "typeahead_hits": "answered from the typing-ahead cache",
    "typeahead_misses": "typing-ahead lookups that found nothing",
    "reused_tokens": "prompt tokens whose keys and values came from the cache",
    "computed_tokens": "prompt tokens computed",
    "generated_tokens": "tokens generated (cancelled runs too)",
}
# High-water marks (the scheduler's queue).
PEAKS = ("max_queued", "max_queued_per_document")


class Stats:
    """Thread-safe: the inference worker and the event loop both count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys((*COUNTERS, *PEAKS), 0)
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def add(self, name: str, n: int = 1) -> None:
        if name not in COUNTERS:
            raise KeyError(f"undeclared counter {name!r}")
        with self._lock:
            self._values[name] += n

    def peak(self, name: str, value: int) -> None:
        if name not in PEAKS:
            raise KeyError(f"undeclared high-water mark {name!r}")
        with self._lock:
            self._values[name] = max(self._values[name], value)

    def record_latency(self, ms: float) -> None:
        with self._lock:
            self._latencies_ms.append(ms)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def typeahead_hit_rate(self) -> float:
        """Hits / lookups of the typing-ahead cache, 0..1."""
        with self._lock:
            hits, misses = self._values["typeahead_hits"], self._values["typeahead_misses"]
        return hits / (hits + misses) if hits + misses else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Every counter and mark by name, `typeahead_hit_rate` and `latency_ms` ({p50, p95,
        p99}, milliseconds, None without samples)."""
        with self._lock:
            values: dict[str, Any] = dict(self._values)
            latencies = list(self._latencies_ms)
        values["typeahead_hit_rate"] = self.typeahead_hit_rate()
        values["latency_ms"] = {f"p{p}": _round(percentile(latencies, p)) for p in (50, 95, 99)}
        return values


def percentile(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile (a value that was observed; p in 0..100); None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
