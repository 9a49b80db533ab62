"""A small in-process OpenAI-compatible server for timing faults the real vLLM cannot be made
to show on cue: slow first tokens, streams cut mid-way, exact status codes.

Each request is recorded (path, headers, JSON body). Streams are sent chunked, as uvicorn
(vLLM) does; `stream_abort` records that the client went away before the stream ended.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    models: list[str] = field(default_factory=lambda: ["tiny"])
    max_model_len: int | None = 512
    pieces: list[str] = field(default_factory=lambda: ["hello", " world", "\n", "more", " text"])
    first_delay_s: float = 0.0
    delay_s: float = 0.0
    finish: str = "length"
    status: int = 200  # completions answer this status (with `error`) instead of a stream
    error: str = "boom"
    key: str | None = None  # required bearer key
    drop_first: int = 0  # this many completion requests are cut after `drop_after` pieces
    drop_after: int = 1
    done_marker: bool = True  # send `data: [DONE]`
    in_stream_error: str | None = None  # an error event instead of the pieces


class FakeOpenAI:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.requests: list[dict[str, Any]] = []
        self.stream_aborts = 0
        self.streams_finished = 0
        self.aborted = threading.Event()
        self._completions = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._record(self, None)
                if not fake._authorized(self):
                    return
                if self.path == "/v1/models":
                    data = [{"id": m, "object": "model", "root": m, "max_model_len": fake.script.max_model_len}
                            for m in fake.script.models]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake._record(self, body)
                if not fake._authorized(self):
                    return
                if self.path != "/v1/completions":
                    self._json(404, {"detail": "Not Found"})
                    return
                s = fake.script
                if body.get("model") not in s.models:
                    self._json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                               "type": "NotFoundError", "code": 404}})
                    return
                if s.status != 200:
                    self._json(s.status, {"error": {"message": s.error, "code": s.status}})
                    return
                with fake._lock:
                    fake._completions += 1
                    drop = fake._completions <= s.drop_first
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    time.sleep(s.first_delay_s)
                    if s.in_stream_error is not None:
                        self._event({"error": {"message": s.in_stream_error, "code": 500}})
                    else:
                        for i, piece in enumerate(s.pieces):
                            if drop and i == s.drop_after:
                                self.close_connection = True
                                self.connection.close()
                                return
                            if i:
                                time.sleep(s.delay_s)
                            last = i == len(s.pieces) - 1
                            self._event({"choices": [{"index": 0, "text": piece,
                                                      "finish_reason": s.finish if last else None}]})
                    if s.done_marker:
                        self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                    fake.streams_finished += 1
                except (BrokenPipeError, ConnectionResetError, OSError):
                    fake.stream_aborts += 1
                    fake.aborted.set()
                    self.close_connection = True

            def _event(self, data: dict[str, Any]) -> None:
                self._chunk(b"data: " + json.dumps(data).encode() + b"\n\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _json(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        with self._lock:
            self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        key = self.script.key
        if key is None or handler.headers.get("Authorization") == f"Bearer {key}":
            return True
        raw = json.dumps({"error": "Unauthorized"}).encode()
        handler.send_response(401)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)
        return False

    def completions(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/completions")]

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
