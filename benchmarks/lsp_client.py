"""The one JSON-RPC client of the repository's tooling: LSP framing over a server subprocess's stdio.

`RawClient` speaks JSON-RPC without any LSP library in between, so the tools and tests that
use it can send exactly what they want (malformed bytes included): the keystroke storm
(`benchmarks/storm.py`), the benchmark's LSP probe (`benchmarks/keystrokes.py --lsp`) and the
reliability tests (`tests/reliability`). The LSP behaviour tests use pytest-lsp instead.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REQUEST_CANCELLED = -32800


def server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "santa_lsp", "serve", "--stdio", *args]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server under test: the package importable, never the network."""
    env = dict(os.environ)
    # This checkout's package, also when it is not the installed one.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra or {})
    return env


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class RawClient:
    """JSON-RPC over the stdio of a server subprocess, without any LSP library in between.

    A reader thread collects responses (by id, with their arrival time) and answers the
    server's own requests (`workspace/configuration`, progress creation) with null.
    """

    def __init__(self, cmd: list[str] | None = None, env: dict[str, str] | None = None,
                 stderr_path: Path | None = None, **popen: Any) -> None:
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd or server_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env or server_env(), **popen)
        self.responses: dict[Any, tuple[float, dict[str, Any]]] = {}
        self.notifications: deque[dict[str, Any]] = deque(maxlen=200)
        self.sent_at: dict[Any, float] = {}
        self._next_id = 0
        self._cv = threading.Condition()
        # One writer thread: the reader must never block on a write, or a server that writes
        # while we write (both pipes full) would deadlock with us.
        self._outbox: queue.SimpleQueue[tuple[bytes, threading.Event, list[bool]] | None] = queue.SimpleQueue()
        self.closed = False  # the server's stdout ended
        self._reader = threading.Thread(target=self._read, name="lsp-client-reader", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="lsp-client-writer", daemon=True)
        self._reader.start()
        self._writer.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- writing -----------------------------------------------------------------------------
    def write(self, data: bytes, timeout: float = 30.0) -> bool:
        """Send raw bytes; False when the server no longer reads them (within `timeout`)."""
        done, ok = threading.Event(), [False]
        self._outbox.put((data, done, ok))
        return done.wait(timeout) and ok[0]

    def _write_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            data, done, ok = item
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
                ok[0] = True
            except (BrokenPipeError, ValueError, OSError):
                ok[0] = False
            done.set()

    def notify(self, method: str, params: Any = None) -> None:
        self.write(frame({"jsonrpc": "2.0", "method": method, "params": params}))

    def send(self, method: str, params: Any = None) -> int:
        with self._cv:
            self._next_id += 1
            msg_id = self._next_id
            self.sent_at[msg_id] = time.monotonic()
        self.write(frame({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}))
        return msg_id

    def wait(self, msg_id: Any, timeout: float = 30.0) -> dict[str, Any] | None:
        """The response to request `msg_id`, or None if none came within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while msg_id not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self._cv.wait(min(left, 0.1))
            return self.responses[msg_id][1]

    def request(self, method: str, params: Any = None, timeout: float = 30.0) -> dict[str, Any] | None:
        return self.wait(self.send(method, params), timeout)

    def latency_ms(self, msg_id: Any) -> float | None:
        got = self.responses.get(msg_id)
        return None if got is None else (got[0] - self.sent_at[msg_id]) * 1e3

    # -- LSP conveniences --------------------------------------------------------------------
    def initialize(self, options: dict[str, Any] | None = None, process_id: int | None = None,
                   timeout: float = 60.0) -> dict[str, Any]:
        caps = {"textDocument": {"synchronization": {}, "inlineCompletion": {}},
                "window": {"workDoneProgress": True}, "general": {"positionEncodings": ["utf-16"]}}
        reply = self.request("initialize", {"processId": process_id, "capabilities": caps,
                                            "initializationOptions": options or {}}, timeout)
        if reply is None or "result" not in reply:
            raise RuntimeError(f"initialize failed: {reply}")
        self.notify("initialized", {})
        return reply["result"]

    def status(self, timeout: float = 30.0) -> dict[str, Any] | None:
        reply = self.request("workspace/executeCommand", {"command": "santa.status", "arguments": []}, timeout)
        return None if reply is None else reply.get("result")

    def wait_ready(self, timeout: float = 120.0, states: tuple[str, ...] = ("ready",)) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(timeout=max(1.0, deadline - time.monotonic()))
            if status and status.get("state") in states:
                return status
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server not {states} after {timeout:g}s: {status}")
            time.sleep(0.05)

    def open(self, uri: str, text: str, version: int = 1, language: str = "python") -> None:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": version,
                                                              "text": text}})

    def change(self, uri: str, version: int, line: int, character: int, text: str) -> None:
        """Insert `text` at (line, character), an incremental change."""
        pos = {"line": line, "character": character}
        self.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"range": {"start": pos, "end": pos}, "text": text}]})

    def inline(self, uri: str, line: int, character: int) -> int:
        return self.send("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": 2}})

    def shutdown(self, timeout: float = 10.0) -> int | None:
        """shutdown + exit; the server's exit status (None if it did not exit within `timeout`)."""
        self.request("shutdown", None, timeout)
        self.notify("exit")
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Make sure the server is gone (kill it if needed)."""
        self._outbox.put(None)
        self._writer.join(5)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()

    # -- reading -----------------------------------------------------------------------------
    def _read(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    continue
                body = out.read(length)
                if len(body) < length:
                    return
                try:
                    self._dispatch(json.loads(body))
                except (ValueError, TypeError, AttributeError) as err:  # a malformed message must not stop the reader
                    self.notifications.append({"method": "<unreadable>", "params": {"error": repr(err)}})
        finally:
            with self._cv:
                self.closed = True
                self._cv.notify_all()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "method" in msg and "id" in msg:  # the server asks something: answer null (without waiting)
            self._outbox.put((frame({"jsonrpc": "2.0", "id": msg["id"], "result": None}), threading.Event(), [False]))
        elif "method" in msg:
            self.notifications.append(msg)
        else:
            key = msg.get("id")
            if isinstance(key, (list, dict)):  # an answer to a fuzzed, unhashable id
                key = json.dumps(key)
            with self._cv:
                self.responses[key] = (time.monotonic(), msg)
                self._cv.notify_all()
