"""Issue 14, item 8: error paths keep no memory and flood nothing.

Before: ~53 bytes kept per malformed notification, each also popping up "Error in server" in
the editor; ~56 bytes per invalid-params request; ~4.5 kB per unanswered
workspace/configuration request (no timeout); a 10 MB model name repeated into every message;
config.json pointing at /dev/zero read 2 GB before failing, and a FIFO hung the load.

Memory is read from the server's own tracemalloc (PYTHONTRACEMALLOC=1, reported by
santa.status as memory.tracedBytes): exact, where RSS moves in 4 kB pages and allocator
arenas. SANTA_ERROR_PATH_MESSAGES sets the messages per burst (CI: 5,000; RELIABILITY.md has
the 100,000 run).
"""

from __future__ import annotations

import os
import time

from hostile_client import frame, start_bare
from reliability_helpers import record

N = int(os.environ.get("SANTA_ERROR_PATH_MESSAGES", "5000"))
# Allowed growth of traced memory over a burst: one-time growth (dict resizes, free lists)
# only; a per-message leak of the old size (53 B x N) is far above it.
SLACK = 160 * 1024

BAD_NOTIFICATION = frame({"jsonrpc": "2.0", "method": "textDocument/didChange",
                          "params": {"textDocument": {"uri": 1}, "contentChanges": "x"}})


def bad_request(i: int) -> bytes:
    return frame({"jsonrpc": "2.0", "id": f"bad-{i}", "method": "textDocument/inlineCompletion",
                  "params": {"position": "x"}})


def send_burst(client, make, n: int) -> None:
    for start in range(0, n, 500):
        assert client.write(b"".join(make(i) for i in range(start, min(n, start + 500))))
    assert client.status(timeout=300) is not None  # everything before it was read


def traced(client) -> int:
    return client.status(timeout=60)["memory"]["tracedBytes"]


def test_bad_messages_keep_no_memory_and_pop_up_nothing(tmp_path):
    client = start_bare(tmp_path / "stderr.log", extra_env={"PYTHONTRACEMALLOC": "1"})
    try:
        figures = {}
        for name, make in (("malformed notification", lambda i: BAD_NOTIFICATION), ("invalid-params request", bad_request)):
            send_burst(client, make, min(N, 2000))  # warm-up: lazy imports, caches, log throttles
            growths = []
            t0 = time.monotonic()
            for _ in range(2):  # a leak grows in every burst; one-time growth in one at most
                before = traced(client)
                send_burst(client, make, N)
                growths.append(traced(client) - before)
            figures[name] = {"messages": 2 * N, "traced_growth_bytes": growths,
                             "bytes_per_message": round(min(growths) / N, 2),
                             "seconds": round(time.monotonic() - t0, 1)}
            assert min(growths) < SLACK, (name, figures[name])
        assert all(f"bad-{i}" in client.responses for i in range(0, N, 97))  # every request answered
        assert client.count("window/showMessage") == 0  # no pop-up per bad message
        assert client.count("window/logMessage") < 40  # rate-limited
        log_lines = (tmp_path / "stderr.log").read_text(errors="replace").count("\n")
        assert log_lines < 120, log_lines
        figures["stderr_lines"] = log_lines
        record("error_paths", figures)
    finally:
        client.close()


def test_unanswered_configuration_requests_time_out(tmp_path):
    """A client that announces workspace/configuration and never answers: one request at a time,
    each dropped after the timeout (1 s here, 10 s by default)."""
    client = start_bare(tmp_path / "stderr.log", answer_server_requests=False,
                        extra_env={"SANTA_LSP_CONFIGURATION_TIMEOUT_S": "1", "PYTHONTRACEMALLOC": "1"},
                        capabilities={"workspace": {"configuration": True}})
    try:
        before = traced(client)
        for _ in range(200):
            client.notify("workspace/didChangeConfiguration", {"settings": None})
        assert client.status() is not None
        asked = [m for m in client.server_requests if m["method"] == "workspace/configuration"]
        assert len(asked) == 1, len(asked)  # the rest wait for that one
        time.sleep(2.5)  # first times out, the one queued behind it is sent and times out too
        asked = [m for m in client.server_requests if m["method"] == "workspace/configuration"]
        assert len(asked) == 2, len(asked)
        assert traced(client) - before < SLACK
        text = (tmp_path / "stderr.log").read_text(errors="replace")
        assert "no answer within 1s" in text
        assert client.status()["state"] == "disabled"  # the settings stayed
    finally:
        client.close()


def test_huge_model_name_is_refused_not_repeated(tmp_path):
    client = start_bare(tmp_path / "stderr.log")
    try:
        client.notify("workspace/didChangeConfiguration", {"settings": {"santa": {"model": "m" * 10_000_000}}})
        reply = client.request("workspace/executeCommand", {"command": "santa.status", "arguments": []}, 60)
        assert reply is not None
        status = reply["result"]
        assert len(str(status)) < 10_000 and status["state"] == "disabled"
        time.sleep(0.3)
        assert client.received_bytes < 100_000, client.received_bytes  # not 10 MB per message
        assert any("too long" in s for s in client.shown), client.shown
    finally:
        client.close()


def test_config_json_device_or_fifo_fails_fast(tmp_path):
    device, fifo = tmp_path / "device", tmp_path / "fifo"
    for d in (device, fifo):
        d.mkdir()
    os.symlink("/dev/zero", device / "config.json")
    os.mkfifo(fifo / "config.json")
    client = start_bare(tmp_path / "stderr.log")
    try:
        for model, word in ((device, "device"), (fifo, "FIFO")):
            t0 = time.monotonic()
            client.notify("workspace/didChangeConfiguration", {"settings": {"santa": {"model": str(model),
                                                                                     "enable": True}}})
            status = client.wait_ready(timeout=90, states=("error",))
            assert word in status["message"], status
            assert time.monotonic() - t0 < 60
            client.notify("workspace/didChangeConfiguration", {"settings": {"santa": {"enable": False}}})
            client.wait_ready(timeout=30, states=("disabled",))
    finally:
        client.close()
