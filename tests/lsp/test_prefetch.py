"""Prefetch is a background job of the one inference worker: with it on, no two model runs
overlap, and every real request cancels a pending or running prefetch.

In process: the server's own request path (`suggest`) over an engine that writes slowly and
records how many runs are under way at once."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from lsprotocol import types

from santa_lsp.config import Options
from santa_lsp.engine.generate import GenerationResult, StopReason
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.lsp.scheduler import Scheduler
from santa_lsp.lsp.server import create_server
from santa_lsp.lsp.status import READY
from santa_lsp.service import CompletionService

ANSWER = "return w * h\n"
STEP_S = 0.01  # per generated token


class SlowEngine:
    """Writes ANSWER a token per STEP_S, looking at `cancelled()` between tokens."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer, self.n_positions = tokenizer, 2048
        self.lock = threading.Lock()
        self.running = self.most_running = self.runs = self.cancelled_runs = 0

    def cache_bytes(self) -> int:
        return 0

    def generate(self, prompt, params, key="", cancelled=lambda: False, reuse=True) -> GenerationResult:
        with self.lock:
            self.running += 1
            self.runs += 1
            self.most_running = max(self.most_running, self.running)
        try:
            out, reason = [], StopReason.EOT
            for token in self.tokenizer.encode(params.forced_text + ANSWER):
                if cancelled():
                    reason = StopReason.CANCELLED
                    break
                time.sleep(STEP_S)
                out.append(token)
            if reason == StopReason.CANCELLED:
                with self.lock:
                    self.cancelled_runs += 1
            return GenerationResult(out, reason, len(prompt), 0, len(prompt), 0.0, STEP_S * len(out) * 1e3)
        finally:
            with self.lock:
                self.running -= 1


class Sink:
    def write(self, data):
        pass

    def close(self):
        pass


def serve(engine: SlowEngine):
    """A server with `engine` loaded and prefetch on, and a function that opens a document."""
    ls = create_server()
    proto = ls.protocol
    proto.set_writer(Sink())

    def send(msg):
        proto.handle_message(json.loads(json.dumps({"jsonrpc": "2.0", **msg}), object_hook=proto.structure_message))

    send({"id": 1, "method": "initialize",
          "params": {"processId": None, "capabilities": {}, "initializationOptions": {"enable": False}}})
    ls.options = Options(prefetch=True, debounce_ms=0)
    ls.service = CompletionService(engine, ls.options, interactive=True, stats=ls.stats)
    ls.status.state = READY

    def open_doc(uri: str, text: str) -> None:
        send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}}})

    return ls, open_doc


async def wait_until(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.005)


def test_prefetch_never_overlaps_a_request_and_yields_to_it(tiny_tokenizer):
    engine = SlowEngine(Tokenizer(tiny_tokenizer))

    async def run() -> None:
        ls, open_doc = serve(engine)
        await asyncio.sleep(0.05)
        text = "def area(w, h):\n    \n"
        for i in range(4):
            open_doc(f"file:///d{i}.py", text)
        at = types.Position(1, 4)
        # Each answer queues its prefetch; the next request arrives while it runs.
        for i in range(4):
            shown = await ls.suggest(f"file:///d{i}.py", at)
            assert shown is not None and shown.text == "return w * h"
            await wait_until(lambda: engine.running == 1)  # the prefetch is under way
        # Left alone, the last prefetch completes and answers the accepted state.
        await wait_until(lambda: ls.stats["prefetches"] == 1 and engine.running == 0)
        ls.scheduler.stop()

    asyncio.run(run())
    assert engine.most_running == 1  # one inference worker: never two runs at once
    assert engine.cancelled_runs == 3  # each request stopped the prefetch running before it
    assert engine.runs == 8  # 4 requests, 4 prefetches


def test_a_request_drops_a_pending_prefetch_and_none_waits_behind_it():
    order: list[str] = []
    release = threading.Event()
    scheduler = Scheduler()
    done = threading.Event()

    def record(name):
        def work(cancelled):
            order.append(name)
            if name == "first":
                release.wait(10)

        return work

    def finished(job, result, error):
        if job.doc == "b":
            done.set()

    scheduler.submit("a", record("first"), finished)
    while not order:
        time.sleep(0.001)
    prefetch = scheduler.submit("a", record("prefetch"), finished, background=True)
    refused = scheduler.submit("c", record("refused"), finished, background=True)
    assert prefetch.cancelled()  # replaced by the newer background job
    scheduler.submit("b", record("request"), finished)
    assert refused.cancelled()  # a request cancels every background job
    late = scheduler.submit("c", record("late"), finished, background=True)
    assert late.cancelled()  # never queued while a request waits
    release.set()
    assert done.wait(10)
    scheduler.stop()
    assert order == ["first", "request"] and scheduler.queued() == 0
