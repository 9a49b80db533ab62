"""Rate-limited logging: a flood of bad messages costs a few log lines, not one each.

Keys are a fixed set of kinds (never taken from the input), so the bookkeeping stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

MAX_TEXT = 300  # characters of one logged text (inputs can be megabytes)


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, cut to `limit` characters with a note of the full length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class Throttle:
    """At most `per_window` records per kind every `window_s` seconds; the next record of that
    kind says how many were suppressed."""

    def __init__(self, logger: logging.Logger, per_window: int = 5, window_s: float = 60.0) -> None:
        self.logger = logger
        self.per_window = per_window
        self.window_s = window_s
        self._state: dict[str, list[float]] = {}  # kind -> [window start, logged, suppressed]
        self.total: dict[str, int] = {}  # kind -> every occurrence, logged or not

    def __call__(self, kind: str, text: str | Callable[[], str], level: int = logging.WARNING) -> bool:
        """Log `text` (or what it returns, computed only when logged) unless this kind is over
        its rate; True if it was logged."""
        self.total[kind] = self.total.get(kind, 0) + 1
        now = time.monotonic()
        state = self._state.setdefault(kind, [now, 0, 0])
        if now - state[0] >= self.window_s:
            state[0], state[1] = now, 0
        if state[1] >= self.per_window:
            state[2] += 1
            return False
        state[1] += 1
        suppressed, state[2] = int(state[2]), 0
        note = f" ({suppressed} more like this suppressed)" if suppressed else ""
        self.logger.log(level, "%s%s", clip(text() if callable(text) else text), note)
        return True
