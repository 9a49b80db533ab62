"""What the server reports about itself: model state, statistics, acceptance, memory.

`ModelStatus.notification()` is the payload of the `santa/status` notification (the VS Code
status bar); `status_report` is the answer to `workspace/executeCommand santa.status`. The
counters are the server's one registry (stats.py), reported whole.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from santa_lsp.config import camel
from santa_lsp.stats import Stats

LOADING, READY, ERROR, DISABLED = "loading", "ready", "error", "disabled"
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


def status_report(status: ModelStatus, stats: Stats, cache_bytes: int = 0, queued: int = 0,
                  position_encoding: str = "", feedback: Feedback | None = None) -> dict[str, Any]:
    """`stats`: every counter, camelCased (stats.COUNTERS); `cache_bytes` (the engine's KV cache)
    and `queued` (requests waiting now) are the two gauges read at report time."""
    counters = {camel(name): value for name, value in stats.snapshot().items()}
    return {
        "state": status.state, "model": _clip(status.model), "requestedModel": _clip(status.requested_model),
        "device": status.device, "dtype": status.dtype, "message": _clip(status.message),
        "loadSeconds": None if status.load_seconds is None else round(status.load_seconds, 2),
        "positionEncoding": position_encoding,
        "stats": {**counters, "cacheBytes": cache_bytes, "queued": queued},
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

