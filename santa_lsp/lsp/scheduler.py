"""One inference worker thread; the newest request for a document wins.

Inference never runs on the event loop: jobs go to a single worker thread (one model, one
KV cache, so running two at once would only make both slower). Submitting a job for a
document cancels the older jobs for that document: a pending one is dropped at once, the one
running sees its `cancelled` callable turn true and stops at its next decode step. A job may
wait `debounce_s` before it starts, so a burst of keystrokes costs one inference.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# work(cancelled) -> result; done(job, result, error) is called once, from any thread.
Work = Callable[[Callable[[], bool]], Any]
Done = Callable[["Job", Any, "BaseException | None"], None]


@dataclass(eq=False)
class Job:
    doc: str
    work: Work
    done: Done
    not_before: float  # time.monotonic() before which the job does not start (debounce)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def wait_ms(self) -> float:
        """Time spent queued (debounce included) before the worker picked the job up."""
        return ((self.started or time.monotonic()) - self.submitted) * 1e3


class Scheduler:
    def __init__(self, name: str = "santa-inference") -> None:
        self._cv = threading.Condition()
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._stopped = False
        self._max_queued = self._max_queued_per_doc = 0  # high-water marks, for santa.status
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, doc: str, work: Work, done: Done, debounce_s: float = 0.0) -> Job:
        """Queue `work` for `doc`, cancelling the document's older jobs."""
        job = Job(doc, work, done, time.monotonic() + max(0.0, debounce_s))
        with self._cv:
            dropped = self._cancel_locked(lambda j: j.doc == doc)
            if self._stopped:
                job.cancel()
                dropped.append(job)
            else:
                self._pending.append(job)
                self._max_queued = max(self._max_queued, len(self._pending))
                self._max_queued_per_doc = max(self._max_queued_per_doc, sum(j.doc == doc for j in self._pending))
                self._cv.notify()
        _finish_dropped(dropped)
        return job

    def queue_stats(self) -> dict[str, int]:
        """Jobs waiting now, and the most ever waiting at once: in all, and for one document."""
        with self._cv:
            return {"queued": len(self._pending), "maxQueued": self._max_queued,
                    "maxQueuedPerDocument": self._max_queued_per_doc}

    def cancel(self, doc: str) -> None:
        """Cancel every job of `doc` (its text changed or it was closed)."""
        with self._cv:
            dropped = self._cancel_locked(lambda j: j.doc == doc)
        _finish_dropped(dropped)

    def cancel_all(self) -> None:
        with self._cv:
            dropped = self._cancel_locked(lambda j: True)
        _finish_dropped(dropped)

    def stop(self) -> None:
        """Cancel everything and let the worker end; does not wait for it."""
        with self._cv:
            self._stopped = True
            dropped = self._cancel_locked(lambda j: True)
            self._cv.notify()
        _finish_dropped(dropped)

    def _cancel_locked(self, match: Callable[[Job], bool]) -> list[Job]:
        """Cancel matching jobs; return the pending ones, which the caller must finish."""
        if self._running is not None and match(self._running):
            self._running.cancel()
        dropped = [j for j in self._pending if match(j)]
        self._pending = [j for j in self._pending if not match(j)]
        for job in dropped:
            job.cancel()
        return dropped

    def _next_locked(self) -> Job | None:
        while not self._stopped:
            now = time.monotonic()
            due = [j for j in self._pending if j.not_before <= now]
            if due:
                job = due[0]
                self._pending.remove(job)
                return job
            timeout = min((j.not_before for j in self._pending), default=now + 3600) - now
            self._cv.wait(timeout)
        return None

    def _loop(self) -> None:
        while True:
            with self._cv:
                job = self._next_locked()
                if job is None:
                    return
                self._running = job
            job.started = time.monotonic()
            result, error = None, None
            try:
                if not job.cancelled():
                    result = job.work(job.cancelled)
            except BaseException as err:  # reported to the waiting request, never kills the worker
                error = err
            with self._cv:
                self._running = None
            _finish(job, result, error)


def _finish(job: Job, result: Any, error: BaseException | None) -> None:
    try:
        job.done(job, result, error)
    except Exception:
        log.exception("completion callback failed")


def _finish_dropped(jobs: list[Job]) -> None:
    for job in jobs:
        _finish(job, None, None)
