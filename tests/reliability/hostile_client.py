"""A raw JSON-RPC client for the hostile-input tests (issue 14): `benchmarks.lsp_client.RawClient`,
plus a count of what the server sent, the server's own requests kept (answered or not), and a
server without a model (`enable: false`, so torch is never imported) for protocol tests."""

from __future__ import annotations

from collections.abc import Iterator

import json
import threading
from pathlib import Path
from typing import Any

from benchmarks.lsp_client import RawClient, frame, server_env

__all__ = ["HostileClient", "frame", "raw_frame", "start_bare"]


def raw_frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class HostileClient(RawClient):
    """`answer_server_requests=False`: the server's requests (workspace/configuration...) are
    recorded and never answered, as a broken client would."""

    def __init__(self, *args: Any, answer_server_requests: bool = True, **kwargs: Any) -> None:
        self.answer_server_requests = answer_server_requests
        self.server_requests: list[dict[str, Any]] = []
        self.received_bytes = 0
        self.messages = 0
        self.shown: list[str] = []  # window/showMessage texts
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        with self._lock:
            self.received_bytes += len(json.dumps(msg))
            self.messages += 1
            if msg.get("method") == "window/showMessage":
                self.shown.append(str(msg.get("params", {}).get("message", "")))
        if "method" in msg and "id" in msg:
            with self._lock:
                self.server_requests.append(msg)
            if not self.answer_server_requests:
                return
        super()._dispatch(msg)

    def count(self, method: str) -> int:
        return sum(1 for n in list(self.notifications) if n.get("method") == method)


def start_bare(log: Path, extra_env: dict[str, str] | None = None, capabilities: dict[str, Any] | None = None,
               initialize: bool = True, **kwargs: Any) -> HostileClient:
    """A server with the model disabled (no torch): the protocol layer alone."""
    client = HostileClient(stderr_path=log, env=server_env(extra_env), **kwargs)
    if initialize:
        caps = capabilities or {"textDocument": {"synchronization": {}, "inlineCompletion": {}}}
        reply = client.request("initialize", {"processId": None, "capabilities": caps,
                                              "initializationOptions": {"enable": False}}, 60)
        assert reply is not None and "result" in reply, reply
        client.notify("initialized", {})
        client.wait_ready(timeout=30, states=("disabled",))
    return client


def bare_session(log: Path, shutdown: bool = False) -> Iterator[HostileClient]:
    """A module fixture's body: a bare server logging to `log`, checked alive at the end (and
    shut down cleanly when `shutdown`)."""
    client = start_bare(log)
    client.log = log
    yield client
    try:
        assert client.proc.poll() is None, "the server died"
        if shutdown:
            assert client.shutdown() == 0
    finally:
        client.close()
