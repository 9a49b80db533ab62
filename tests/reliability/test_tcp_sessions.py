"""Issue 14, item 3: a second TCP connection must not take over the first client's session.

Before (pygls 2.1.1 `start_tcp`: one protocol object, its writer re-pointed at each new
connection), the second client received the first one's answers, saw its documents, disabled
the server for both with its settings, and its disconnect stopped the server. Now a client
that connects while another is served gets one window/showMessage error and is closed; the
first session goes on untouched.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

from benchmarks.lsp_client import frame, server_env


class SocketClient:
    def __init__(self, port: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(None)
        self.messages: list[dict] = []
        self.closed = threading.Event()
        self._cv = threading.Condition()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        f = self.sock.makefile("rb")
        try:
            while True:
                length = None
                while True:
                    line = f.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                msg = json.loads(f.read(length))
                if "method" in msg and "id" in msg:  # the server asks: answer null
                    self.sock.sendall(frame({"jsonrpc": "2.0", "id": msg["id"], "result": None}))
                with self._cv:
                    self.messages.append(msg)
                    self._cv.notify_all()
        except OSError:
            return
        finally:
            self.closed.set()
            with self._cv:
                self._cv.notify_all()

    def request(self, method: str, params=None, timeout: float = 30) -> dict | None:
        self._next += 1
        msg_id = f"c{self._next}"
        self.sock.sendall(frame({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for m in self.messages:
                    if m.get("id") == msg_id and "method" not in m:
                        return m
                if self.closed.is_set() or time.monotonic() > deadline:
                    return None
                self._cv.wait(0.1)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the reader's makefile() keeps the socket open
        except OSError:
            pass
        self.sock.close()

    def notify(self, method: str, params=None) -> None:
        self.sock.sendall(frame({"jsonrpc": "2.0", "method": method, "params": params}))

    def status(self) -> dict | None:
        reply = self.request("workspace/executeCommand", {"command": "santa.status", "arguments": []})
        return None if reply is None else reply.get("result")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_second_client_is_refused_and_the_first_keeps_its_session(tmp_path):
    port = free_port()
    log = open(tmp_path / "stderr.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "santa_lsp", "serve", "--tcp", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=server_env())
    try:
        first = SocketClient(port)
        reply = first.request("initialize", {"processId": None, "capabilities": {},
                                             "initializationOptions": {"enable": False, "maxNewTokens": 7}})
        assert reply is not None and "result" in reply
        first.notify("initialized", {})
        first.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///first.py", "languageId": "python",
                                                               "version": 1, "text": "x = 1\n"}})
        assert first.status()["state"] == "disabled"

        second = SocketClient(port)
        assert second.closed.wait(10), "the second connection was not closed"
        shown = [m for m in second.messages if m.get("method") == "window/showMessage"]
        assert shown and "another client" in shown[0]["params"]["message"], second.messages
        # Whatever it sends goes nowhere.
        try:
            second.sock.sendall(frame({"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration",
                                       "params": {"settings": {"santa": {"enable": True}}}}))
        except OSError:
            pass
        second.close()

        time.sleep(0.5)
        assert proc.poll() is None, "the second client's disconnect ended the server"
        status = first.status()
        assert status is not None and status["state"] == "disabled"  # not enabled by the second client
        ids = [m.get("id") for m in first.messages if "id" in m and "method" not in m]
        assert len(ids) == len(set(ids))  # every answer came here, once
        assert first.request("shutdown") is not None
        first.notify("exit")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()


def test_session_ends_when_its_client_disconnects(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "santa_lsp", "serve", "--tcp", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=server_env())
    try:
        client = SocketClient(port)
        assert "result" in client.request("initialize", {"processId": None, "capabilities": {},
                                                         "initializationOptions": {"enable": False}})
        client.close()
        assert proc.wait(10) == 1  # no shutdown request: status 1, as over stdio
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
