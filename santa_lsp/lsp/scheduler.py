"""One inference worker thread; the newest request for a document wins; prefetch yields to all.

Inference never runs on the event loop: jobs go to a single worker thread (one model, one
KV cache, so running two at once would only make both slower). Submitting a job for a
document cancels the older jobs for that document: a pending one is dropped at once, the one
running sees its `cancelled` callable turn true and stops at its next decode step. A job may
wait `debounce_s` before it starts, so a burst of keystrokes costs one inference.

Background jobs (the prefetch of the next suggestion) are the lowest priority: one at a time
(a newer one replaces it), never started while a request waits, and cancelled, pending or
running, by every request submitted. Cancelling a job is the one way to stop inference: its
`cancelled` callable is what the engine looks at between steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from santa_lsp.stats import Stats

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
    background: bool = False
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
    def __init__(self, name: str = "santa-inference", stats: Stats | None = None) -> None:
        """`stats`: where the queue's high-water marks are kept (the server's registry)."""
        self._cv = threading.Condition()
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._stopped = False
        self.stats = stats if stats is not None else Stats()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, doc: str, work: Work, done: Done, debounce_s: float = 0.0, background: bool = False) -> Job:
        """Queue `work` for `doc`, cancelling the document's older jobs and every background job.
        A `background` job cancels only the older background job, and is dropped (finished at
        once, cancelled) while a request waits."""
        job = Job(doc, work, done, time.monotonic() + max(0.0, debounce_s), background)
        with self._cv:
            if background:
                dropped = self._cancel_locked(lambda j: j.background)
                refused = self._stopped or any(not j.background for j in self._pending)
            else:
                dropped = self._cancel_locked(lambda j: j.doc == doc or j.background)
                refused = self._stopped
            if refused:
                job.cancel()
                dropped.append(job)
            else:
                self._pending.append(job)
                requests = [j for j in self._pending if not j.background]
                self.stats.peak("max_queued", len(requests))
                self.stats.peak("max_queued_per_document", sum(j.doc == doc for j in requests))
                self._cv.notify()
        _finish_dropped(dropped)
        return job

    def queued(self) -> int:
        """Requests waiting now (a background job is not one)."""
        with self._cv:
            return sum(not j.background for j in self._pending)

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
                job = next((j for j in due if not j.background), due[0])
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
