"""What the server reports about itself: model state, request statistics, latency percentiles.

`ModelStatus.notification()` is the payload of the `santa/status` notification (the VS Code
status bar); `status_report` is the answer to `workspace/executeCommand santa.status`.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

LOADING, READY, ERROR, DISABLED = "loading", "ready", "error", "disabled"
LATENCY_WINDOW = 1000  # latencies kept for the percentiles
MAX_FIELD = 500  # characters of a reported name or message (a model name can be megabytes)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD else f"{text[:MAX_FIELD]}... ({len(text)} characters)"


@dataclass
class ModelStatus:
    state: str = LOADING
    model: str = ""  # what is loaded (differs from requested_model after a fallback)
    requested_model: str = ""
    device: str = ""
    dtype: str = ""
    message: str = ""
    load_seconds: float | None = None

    def notification(self) -> dict[str, Any]:
        return {"state": self.state, "model": _clip(self.model), "device": self.device, "dtype": self.dtype,
                "message": _clip(self.message)}


@dataclass
class Stats:
    requests: int = 0  # every inline completion / completion request
    completed: int = 0  # inference ran to the end (suggestion or not)
    suggestions: int = 0  # non-empty answers
    cancelled: int = 0  # superseded by a newer request, the document changed, or $/cancelRequest
    skipped: int = 0  # answered empty without inference: loading, disabled, unknown document, bad position
    errors: int = 0
    waited_for_load: int = 0  # arrived while the model loaded, and waited for it
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record_latency(self, ms: float) -> None:
        self.latencies_ms.append(ms)

    def latency_percentiles(self) -> dict[str, float | None]:
        values = sorted(self.latencies_ms)
        return {f"p{p}": _percentile(values, p) for p in (50, 95, 99)}

    def as_dict(self, engine_totals: dict[str, int] | None = None, cache_bytes: int = 0) -> dict[str, Any]:
        totals = engine_totals or {}
        return {
            "requests": self.requests, "completed": self.completed, "suggestions": self.suggestions,
            "cancelled": self.cancelled, "skipped": self.skipped, "errors": self.errors,
            "waitedForLoad": self.waited_for_load,
            "reusedTokens": totals.get("reused_tokens", 0), "computedTokens": totals.get("computed_tokens", 0),
            "generatedTokens": totals.get("generated_tokens", 0), "cacheBytes": cache_bytes,
            "latencyMs": self.latency_percentiles(),
        }


FEEDBACK_IDS = 1000  # suggestions remembered for a late acceptance command
FEEDBACK_LANGUAGES = 64  # languages counted apart; the rest are "other"
PARTIAL_KINDS = ("word", "line")


class Feedback:
    """Acceptance counted on this machine, never sent anywhere: per language, suggestions
    shown, accepted (all of it), partially accepted (a word or a line, once per suggestion)
    and dismissed (a newer request or a close for the document came first). Editors report an
    acceptance through the item's `command` (`santa.accepted <id> [word|line]`), which they run
    after inserting the text; it may come after the next request, so a suggestion counted as
    dismissed turns accepted then."""

    def __init__(self) -> None:
        self._next_id = 0
        self._items: OrderedDict[int, list[str]] = OrderedDict()  # id -> [language, state]
        self._last: dict[str, int] = {}  # document -> id of its last suggestion
        self.counts: dict[str, dict[str, int]] = {}

    def _count(self, language: str, key: str, delta: int = 1) -> None:
        if language not in self.counts and len(self.counts) >= FEEDBACK_LANGUAGES:
            language = "other"  # a client inventing language ids cannot grow the report
        c = self.counts.setdefault(language, {"shown": 0, "accepted": 0, "partiallyAccepted": 0, "dismissed": 0})
        c[key] += delta

    def shown(self, doc: str, language: str) -> int:
        self.moved_on(doc)
        self._next_id += 1
        self._items[self._next_id] = [language, "shown"]
        while len(self._items) > FEEDBACK_IDS:
            self._items.popitem(last=False)
        self._last[doc] = self._next_id
        self._count(language, "shown")
        return self._next_id

    def moved_on(self, doc: str) -> None:
        """A newer request for `doc`, or `doc` closed: its last suggestion, unless taken, was dismissed."""
        item = self._items.get(self._last.pop(doc, 0))
        if item is not None and item[1] == "shown":
            item[1] = "dismissed"
            self._count(item[0], "dismissed")

    def accepted(self, item_id: object, kind: object = "all") -> bool:
        """Count an acceptance; False for an unknown id or kind."""
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            return False
        item = self._items.get(item_id)
        if item is None or kind not in ("all", *PARTIAL_KINDS):
            return False
        language, state = item
        if state == "dismissed":  # the command came after the next request
            self._count(language, "dismissed", -1)
        if kind == "all" and state != "accepted":
            item[1] = "accepted"
            self._count(language, "accepted")
        elif kind != "all" and state in ("shown", "dismissed"):
            item[1] = "partial"
            self._count(language, "partiallyAccepted")
        return True

    def report(self) -> dict[str, dict[str, int]]:
        total = {"shown": 0, "accepted": 0, "partiallyAccepted": 0, "dismissed": 0}
        for counts in self.counts.values():
            for key, value in counts.items():
                total[key] += value
        return {"total": total, **{lang: dict(c) for lang, c in sorted(self.counts.items())}}


def _percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None without samples."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1], 1)


def status_report(status: ModelStatus, stats: Stats, engine_totals: dict[str, int] | None = None,
                  cache_bytes: int = 0, position_encoding: str = "",
                  service_stats: dict[str, Any] | None = None,
                  feedback: Feedback | None = None) -> dict[str, Any]:
    """`service_stats` (the pipeline's own counters: typing-ahead hits...) join `stats`, camelCased."""
    merged = stats.as_dict(engine_totals, cache_bytes)
    for key, value in (service_stats or {}).items():
        merged.setdefault(_camel(key), value)
    return {
        "state": status.state, "model": _clip(status.model), "requestedModel": _clip(status.requested_model),
        "device": status.device, "dtype": status.dtype, "message": _clip(status.message),
        "loadSeconds": None if status.load_seconds is None else round(status.load_seconds, 2),
        "positionEncoding": position_encoding,
        "stats": merged,
        "acceptance": (feedback or Feedback()).report(),
        "memory": memory_report(),
    }


def memory_report() -> dict[str, int | None]:
    """The server's resident memory (Linux), and what tracemalloc traces when it runs
    (PYTHONTRACEMALLOC=1): the figures the reliability tests watch on error paths."""
    import tracemalloc

    rss = None
    try:
        with open("/proc/self/status") as f:
            rss = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), None)
    except OSError:
        pass
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
    return {"rssBytes": rss, "tracedBytes": traced}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)
