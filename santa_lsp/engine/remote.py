"""Complete through an OpenAI-compatible server (vLLM first; llama-server, TGI... speak it too).

`RemoteEngine` has the interface the completion pipeline uses from the in-process `Engine`
(`tokenizer`, `n_positions`, `generate`), so context, prompt and post-processing are the same:
the prompt is built locally with the served model's own tokenizer (exact token budget) and
sent as token ids to `POST {endpoint}/completions` with `stream: true`. While the answer
streams in (server-sent events), the pipeline's stop rule runs on the text so far, re-tokenized
locally, and the stream is closed as soon as it says stop: the server then aborts the request
(vLLM does so when its client goes away), which frees the GPU for the next keystroke.

HTTP is spoken over a plain socket read by this thread in short polls, so that every wait
(connect, queueing on the server, each token) notices `cancelled()` within POLL_S and closes
the connection: a newer keystroke aborts the older request on the server too. Deadlines:
connect, first token, total. Only connection errors (refused, reset, closed before the answer
ended) are retried, with exponential backoff; HTTP errors are reported at once, as errors the
user can act on (unreachable, 401/403, model not served with the list of served models,
context exceeded, 5xx).

Token healing: the pipeline removes the half-typed word from the prompt and asks for an
answer that starts with it. vLLM can require exactly that: the request carries
`structured_outputs: {"regex": "<healed text>[\\s\\S]*"}`, so the server masks the first
tokens as the in-process engine does (same greedy answers) and lets the rest run free. A server
that ignores the constraint (its answer does not start with the healed text) or refuses it is
asked again without healing, and once it has ignored it (or refused it three times) this engine
un-heals instead: the removed text is
put back into the prompt where the prefix ends, and the answer is reported as starting with it,
as the pipeline expects (the model then continues the partial word as typed).

The API key comes from SANTA_API_KEY, else OPENAI_API_KEY; it is sent as a bearer token and
never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from santa_lsp.engine.generate import GenerationParams, GenerationResult, StopReason
from santa_lsp.engine.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, Tokenizer
from santa_lsp.errors import InvalidOption, InvalidPrompt, ModelLoadError, SantaError
from santa_lsp.stats import percentile

log = logging.getLogger(__name__)

API_KEY_VARS = ("SANTA_API_KEY", "OPENAI_API_KEY")
CONNECT_TIMEOUT_S = 3.0
FIRST_TOKEN_TIMEOUT_S = 20.0  # queueing + prefill on a busy server
TOTAL_TIMEOUT_S = 60.0
RETRIES = 2  # after the first attempt, on connection errors only
BACKOFF_S = 0.2  # then 0.4, 0.8...
POLL_S = 0.02  # how often a blocked read looks at cancelled()
DEFAULT_N_POSITIONS = 2048
MAX_BODY_BYTES = 16 << 20
_CONTEXT_RE = re.compile(r"context length|maximum model length|max_model_len|too long|maximum context", re.I)


class RemoteError(SantaError):
    """The server could not answer; `kind` is unreachable | auth | model | context | server |
    timeout | protocol | request. `str(err)` says what to do."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class _ConnectionLost(Exception):
    """Refused, reset, or closed before the answer ended: worth a retry."""


class _Cancelled(Exception):
    """Unwinds a blocked read once `cancelled()` turns true; reported as StopReason.CANCELLED."""


class _Timeout(Exception):
    pass


def api_key() -> str:
    for name in API_KEY_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def normalize_endpoint(url: str) -> str:
    """`http://host:8000/v1` stays; `http://host:8000` gets `/v1`; a trailing slash goes.
    Raises InvalidOption for anything that is not an http(s) URL with a host."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOption(f"endpoint must be an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise InvalidOption(f"endpoint must not have a query or fragment: {url!r}")
    try:
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError as err:
        raise InvalidOption(f"endpoint has a bad port: {url!r}") from err
    return url if parts.path else url + "/v1"


@dataclass
class _Response:
    status: int
    reason: str
    headers: dict[str, str]


class _Exchange:
    """One HTTP/1.1 request and its answer over a socket this thread reads in short polls."""

    def __init__(self, endpoint: str, connect_timeout: float, cancelled: Callable[[], bool]) -> None:
        self.parts = urlsplit(endpoint)
        self.connect_timeout = connect_timeout
        self.cancelled = cancelled
        self.sock: socket.socket | None = None
        self.buf = b""
        self.eof = False

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None, deadline: float) -> None:
        host, https = self.parts.hostname or "", self.parts.scheme == "https"
        port = self.parts.port or (443 if https else 80)
        timeout = max(0.05, min(self.connect_timeout, deadline - time.monotonic()))
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError) as err:
            raise _ConnectionLost(err.strerror or str(err)) from None
        except socket.gaierror as err:
            raise RemoteError("unreachable", f"cannot resolve host '{host}' ({err.strerror or err})") from None
        except (TimeoutError, socket.timeout):
            raise RemoteError("unreachable", f"no connection to {host}:{port} within {timeout:.1f}s") from None
        except OSError as err:  # no route to host, network down...
            raise RemoteError("unreachable", f"cannot connect to {host}:{port} ({err.strerror or err})") from None
        self.sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if https:
                self.sock = sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            base = self.parts.path.rstrip("/")
            head = [f"{method} {base}{path} HTTP/1.1", f"Host: {self.parts.netloc}", "Connection: close",
                    "User-Agent: santa-lsp"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            if body is not None:
                head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        except ssl.SSLError as err:
            raise RemoteError("unreachable", f"TLS with {host}:{port} failed ({err.reason or err})") from None
        except (TimeoutError, socket.timeout):
            raise _ConnectionLost("timed out sending the request") from None
        except OSError as err:
            raise _ConnectionLost(err.strerror or str(err)) from None

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer; False at end of stream."""
        if self.eof or self.sock is None:
            return False
        while True:
            if self.cancelled():
                raise _Cancelled
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            self.sock.settimeout(min(POLL_S, left))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except ssl.SSLWantReadError:
                continue
            except OSError as err:
                raise _ConnectionLost(err.strerror or str(err)) from None
            if not data:
                self.eof = True
                return False
            self.buf += data
            if len(self.buf) > MAX_BODY_BYTES:
                raise RemoteError("protocol", "the server's answer is too large")
            return True

    def read_head(self, deadline: float) -> _Response:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise _ConnectionLost("the connection closed before an answer")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        try:
            _version, status, *reason = lines[0].split(" ", 2)
            code = int(status)
        except ValueError:
            raise RemoteError("protocol", f"not an HTTP answer: {lines[0][:80]!r}") from None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return _Response(code, reason[0] if reason else "", headers)

    def body(self, response: _Response, deadline: Callable[[], float]) -> Iterator[bytes]:
        """The body's bytes as they arrive (chunked, sized, or up to the end of the stream)."""
        if response.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill(deadline()):
                        raise _ConnectionLost("the connection closed in the middle of the answer")
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise RemoteError("protocol", "bad chunked encoding in the server's answer") from None
                while len(self.buf) < size + 2:
                    if not self._fill(deadline()):
                        if size == 0:
                            return
                        raise _ConnectionLost("the connection closed in the middle of the answer")
                if size == 0:
                    return
                chunk, self.buf = self.buf[:size], self.buf[size + 2:]
                yield chunk
        elif "content-length" in response.headers:
            try:
                left = int(response.headers["content-length"])
            except ValueError:
                raise RemoteError("protocol", "bad Content-Length in the server's answer") from None
            while left > 0:
                if not self.buf and not self._fill(deadline()):
                    raise _ConnectionLost("the connection closed in the middle of the answer")
                chunk, self.buf = self.buf[:left], self.buf[left:]
                left -= len(chunk)
                yield chunk
        else:
            while True:
                if self.buf:
                    chunk, self.buf = self.buf, b""
                    yield chunk
                if not self._fill(deadline()):
                    return


def _sse_events(chunks: Iterator[bytes]) -> Iterator[Any]:
    """Server-sent events' JSON payloads; ends at `data: [DONE]` (returns "DONE" last)."""
    pending = b""
    data: list[bytes] = []
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                data.append(line[5:].strip())
            elif not line and data:
                payload = b"\n".join(data)
                data = []
                if payload == b"[DONE]":
                    yield "DONE"
                    return
                yield _json_event(payload)
    if data:  # the body ended right after the last event's data line
        payload = b"\n".join(data)
        yield "DONE" if payload == b"[DONE]" else _json_event(payload)


def _json_event(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise RemoteError("protocol", f"the server sent an event that is not JSON: {payload[:80]!r}") from None


@dataclass
class RemoteStats:
    """What santa.status shows about the remote: where, what, how fast, the last error."""

    endpoint: str
    model: str
    requests: int = 0
    errors: int = 0
    retries: int = 0
    reachable: bool | None = None  # None until the first answer or failure
    last_error: str = ""
    last_latency_ms: float | None = None  # whole request: connect to last token
    last_first_token_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        p50 = percentile(self.latencies_ms[-200:], 50)
        return {"endpoint": self.endpoint, "model": self.model, "requests": self.requests, "errors": self.errors,
                "retries": self.retries, "reachable": self.reachable, "lastError": self.last_error,
                "lastLatencyMs": _round(self.last_latency_ms), "lastFirstTokenMs": _round(self.last_first_token_ms),
                "latencyP50Ms": _round(p50)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class RemoteEngine:
    """The Engine interface, answered by an OpenAI-compatible /completions endpoint."""

    def __init__(self, endpoint: str, model: str, tokenizer: Tokenizer, n_positions: int | None = None,
                 key: str | None = None, on_event: Callable[[str], None] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S, first_token_timeout: float = FIRST_TOKEN_TIMEOUT_S,
                 total_timeout: float = TOTAL_TIMEOUT_S, retries: int = RETRIES, backoff: float = BACKOFF_S) -> None:
        self.endpoint = normalize_endpoint(endpoint)
        self.model_name = model
        self.name = model
        self.tokenizer = tokenizer
        self.n_positions = n_positions or DEFAULT_N_POSITIONS
        self._key = api_key() if key is None else key
        self.on_event = on_event
        self.connect_timeout, self.first_token_timeout, self.total_timeout = \
            connect_timeout, first_token_timeout, total_timeout
        self.retries, self.backoff = retries, backoff
        self.prompt_as_text = False  # set when the server refuses token-id prompts
        self.heal_remotely = True  # cleared when the server ignores or keeps refusing the healing constraint
        self._heal_refusals = 0
        # The served context length is known (given, or GET /models answered); else asked for
        # before the next request.
        self.probed = n_positions is not None
        self.remote = RemoteStats(self.endpoint, model)
        self._lock = threading.Lock()
        self._reported = ""  # the error last shown to the user; "" once the server answers again

    def __repr__(self) -> str:  # never the key
        return f"RemoteEngine({self.endpoint!r}, {self.model_name!r})"

    # -- the Engine interface the pipeline uses --------------------------------------------------
    def clear_cache(self) -> None:
        """The server owns its caches (vLLM: automatic prefix caching)."""

    def cache_bytes(self) -> int:
        return 0

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self.remote.as_dict()

    def generate(self, prompt: list[int], params: GenerationParams, key: str = "",
                 cancelled: Callable[[], bool] = lambda: False, reuse: bool = True) -> GenerationResult:
        if not prompt:
            raise InvalidPrompt("empty prompt")
        if not self.probed:
            self._probe()
        healed = params.forced_text
        t0 = time.perf_counter()
        heal = bool(healed)
        while True:
            constrain = heal and self.heal_remotely
            ids = list(prompt) if constrain else self._with_healed(prompt, healed)
            room = self.n_positions - len(ids)
            if room <= 0:
                raise RemoteError("context", f"the prompt of {len(ids)} tokens does not fit the served model's "
                                             f"context of {self.n_positions}; lower the contextBudget option")
            max_new = min(params.max_new_tokens, room)
            try:
                text, reason, first_ms, cached = self._complete(ids, params, max_new, healed if constrain else "",
                                                                "" if constrain else healed, cancelled)
            except _NotConstrained as why:
                self._not_constrained(str(why))
                heal = False  # this request again, un-healed
                continue
            except RemoteError as err:
                self._failed(err)
                raise
            break
        if not constrain:
            text = healed + text  # the answer starts with the healed text, as the pipeline expects
        total_ms = (time.perf_counter() - t0) * 1e3
        if reason == StopReason.LENGTH and max_new < params.max_new_tokens:
            reason = StopReason.CONTEXT
        out = self.tokenizer.encode(text)
        was_cancelled = reason == StopReason.CANCELLED
        if not was_cancelled or first_ms is not None:  # a cancelled wait proves nothing either way
            self._answered(total_ms, first_ms, not was_cancelled)
        first = total_ms if first_ms is None else first_ms
        return GenerationResult(ids=[] if was_cancelled else out, stop_reason=reason, prompt_tokens=len(ids),
                                reused_tokens=cached, computed_tokens=len(ids) - cached, prefill_ms=first,
                                decode_ms=max(0.0, total_ms - first))

    # -- healing: give the removed text back to the prompt ----------------------------------------
    def _with_healed(self, prompt: list[int], healed: str) -> list[int]:
        """The prompt with the healed text put back where the prefix ends: the end in SPM, before
        <fim-suffix> in PSM."""
        if not healed:
            return list(prompt)
        back = self.tokenizer.encode(healed)
        tok_ids = self.tokenizer.ids
        if len(prompt) >= 2 and prompt[0] == tok_ids[FIM_PREFIX] and prompt[1] != tok_ids[FIM_SUFFIX] \
                and tok_ids[FIM_SUFFIX] in prompt and prompt[-1] == tok_ids[FIM_MIDDLE]:
            at = prompt.index(tok_ids[FIM_SUFFIX])  # PSM: <fim-prefix> prefix <fim-suffix> suffix <fim-middle>
            return prompt[:at] + back + prompt[at:]
        return list(prompt) + back

    # -- one completion, with retries on connection errors ------------------------------------------
    def _not_constrained(self, why: str) -> None:
        """The server did not apply the healing constraint: ask again un-healed; stop asking for
        it when the server ignores it, or has refused it three times."""
        self._heal_refusals += 1
        if why == "ignored" or self._heal_refusals >= 3:
            self.heal_remotely = False
            log.info("%s does not constrain answers to the healed text (%s): healing is off for it", self.endpoint,
                     why)

    def _body(self, ids: list[int], params: GenerationParams, max_new: int, healed: str = "") -> dict[str, Any]:
        tok = self.tokenizer
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": tok.prompt_text(ids) if self.prompt_as_text else ids,
            "max_tokens": max_new, "temperature": params.temperature, "top_p": params.top_p,
            "stream": True, "n": 1,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.exact_length:
            body["ignore_eos"] = True  # vLLM: generate exactly max_tokens (benchmarks)
            body["min_tokens"] = max_new
        else:
            # vLLM: any FIM control token ends the answer, as in-process (others ignore it).
            body["stop_token_ids"] = sorted(tok.special_ids - {tok.eot_id})
        if self.prompt_as_text:
            body["add_special_tokens"] = False
        if healed:  # vLLM: the answer must start with the healed text (token healing on the server)
            body["structured_outputs"] = {"regex": healing_regex(healed)}
        return body

    def _complete(self, ids: list[int], params: GenerationParams, max_new: int, healed: str, before: str,
                  cancelled: Callable[[], bool]) -> tuple[str, StopReason, float | None, int]:
        """Stream one answer. `healed`: the answer must start with it (asked of the server);
        `before`: text the pipeline's stop rule sees ahead of the answer (the un-healed text)."""
        start = time.monotonic()
        deadline = start + self.total_timeout
        attempt = 0
        while True:
            body = self._body(ids, params, max_new, healed)
            try:
                return self._stream(body, params, healed, before, cancelled, start, deadline)
            except _ConnectionLost as err:
                attempt += 1
                wait = self.backoff * 2 ** (attempt - 1)
                if attempt > self.retries or time.monotonic() + wait >= deadline:
                    raise RemoteError("unreachable", f"cannot reach {self.endpoint} ({err}); is the server "
                                                     "running? Check the endpoint option") from None
                with self._lock:
                    self.remote.retries += 1
                log.debug("%s: %s; retry %d in %.1fs", self.endpoint, err, attempt, wait)
                if _sleep(wait, cancelled):
                    return "", StopReason.CANCELLED, None, 0
            except _RetryAsText:
                continue

    def _stream(self, body: dict[str, Any], params: GenerationParams, healed: str, before: str,
                cancelled: Callable[[], bool], start: float,
                deadline: float) -> tuple[str, StopReason, float | None, int]:
        exchange = _Exchange(self.endpoint, self.connect_timeout, cancelled)
        first_deadline = min(deadline, start + self.first_token_timeout)
        text, reason, first_ms, cached, finished = "", StopReason.LENGTH, None, 0, False
        t0 = time.perf_counter()

        def current_deadline() -> float:
            return deadline if first_ms is not None else first_deadline

        try:
            if cancelled():
                return "", StopReason.CANCELLED, None, 0
            exchange.send("POST", "/completions", self._headers(), json.dumps(body).encode(), first_deadline)
            response = exchange.read_head(first_deadline)
            if response.status != 200:
                self._raise_http(response, b"".join(exchange.body(response, current_deadline)), body)
            for event in _sse_events(exchange.body(response, current_deadline)):
                if event == "DONE":
                    return text, reason, first_ms, cached
                if not isinstance(event, dict):
                    continue
                if "error" in event:
                    raise _error_from_event(event["error"], self.endpoint)
                usage = event.get("usage") or {}
                details = usage.get("prompt_tokens_details") or {}
                cached = int(details.get("cached_tokens") or cached)
                for choice in event.get("choices") or ():
                    delta = choice.get("text") or ""
                    if delta:
                        if first_ms is None:
                            first_ms = (time.perf_counter() - t0) * 1e3
                        text += delta
                    finish = choice.get("finish_reason")
                    if finish:
                        # "stop": end of text or a stop token; "length": max_tokens.
                        reason, finished = (StopReason.LENGTH if finish == "length" else StopReason.EOT), True
                    if delta and healed and not (text.startswith(healed) or healed.startswith(text)):
                        raise _NotConstrained("ignored")
                    if delta and params.stop is not None and params.stop(self.tokenizer.encode(before + text)):
                        return text, StopReason.STOP, first_ms, cached  # closing the stream aborts it on the server
            if finished:
                return text, reason, first_ms, cached  # a server that ends without [DONE]
            raise _ConnectionLost("the stream ended before the answer did")
        except _Cancelled:
            return text, StopReason.CANCELLED, first_ms, cached
        except _Timeout:
            what = "the first token" if first_ms is None else "the end of the answer"
            limit = self.first_token_timeout if first_ms is None else self.total_timeout
            raise RemoteError("timeout", f"{self.endpoint} did not send {what} within {limit:.0f}s; the server "
                                         "is overloaded or stuck") from None
        finally:
            exchange.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _raise_http(self, response: _Response, raw: bytes, body: dict[str, Any]) -> None:
        message = _error_message(raw) or response.reason
        status = response.status
        if status in (401, 403):
            how = ("the key in SANTA_API_KEY / OPENAI_API_KEY was refused" if self._key else
                   "it needs an API key: set SANTA_API_KEY (or OPENAI_API_KEY) where santa-lsp starts")
            raise RemoteError("auth", f"{self.endpoint} answered {status}: {how}")
        if status == 404:
            served = self._served_names()
            if served is not None and self.model_name not in served:
                raise RemoteError("model", model_not_served(self.endpoint, self.model_name, served))
            raise RemoteError("request", f"{self.endpoint}/completions answered 404 ({message}); check the endpoint "
                                         "option (an OpenAI-compatible base URL, usually ending in /v1)")
        if status in (400, 413, 422) and _CONTEXT_RE.search(message):
            raise RemoteError("context", f"the prompt is too long for the served model ({message}); lower the "
                                         "contextBudget or maxNewTokens option, or serve with a longer context")
        if status in (400, 422) and "structured_outputs" in body:
            raise _NotConstrained(f"HTTP {status}: {message}")
        if status in (400, 422) and not self.prompt_as_text and "prompt" in message.lower():
            log.info("%s refused a token-id prompt (%s): sending text prompts from now on", self.endpoint, message)
            self.prompt_as_text = True
            raise _RetryAsText
        if status >= 500:
            raise RemoteError("server", f"{self.endpoint} failed (HTTP {status}: {message})")
        raise RemoteError("request", f"{self.endpoint} refused the request (HTTP {status}: {message})")

    # -- the served models ------------------------------------------------------------------------
    def models(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """GET {endpoint}/models: the served models' entries (id, root, max_model_len...)."""
        exchange = _Exchange(self.endpoint, self.connect_timeout, lambda: False)
        deadline = time.monotonic() + (timeout or self.connect_timeout + 5)
        try:
            exchange.send("GET", "/models", self._headers(), None, deadline)
            response = exchange.read_head(deadline)
            raw = b"".join(exchange.body(response, lambda: deadline))
        except _ConnectionLost as err:
            raise RemoteError("unreachable", f"cannot reach {self.endpoint} ({err}); is the server running? "
                                             "Check the endpoint option") from None
        except _Timeout:
            raise RemoteError("timeout", f"{self.endpoint}/models did not answer in time") from None
        finally:
            exchange.close()
        if response.status in (401, 403):
            how = ("the key in SANTA_API_KEY / OPENAI_API_KEY was refused" if self._key else
                   "it needs an API key: set SANTA_API_KEY (or OPENAI_API_KEY) where santa-lsp starts")
            raise RemoteError("auth", f"{self.endpoint} answered {response.status}: {how}")
        if response.status == 404:
            raise RemoteError("request", f"{self.endpoint}/models answered 404; check the endpoint option (an "
                                         "OpenAI-compatible base URL, usually ending in /v1)")
        if response.status != 200:
            kind = "server" if response.status >= 500 else "request"
            raise RemoteError(kind, f"{self.endpoint}/models answered {response.status} "
                                    f"({_error_message(raw) or response.reason})")
        try:
            data = json.loads(raw).get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list):
            raise RemoteError("protocol", f"{self.endpoint}/models did not answer an OpenAI model list")
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def server_metrics(self, timeout: float = 5.0) -> dict[str, float]:
        """The server's Prometheus metrics (vLLM: GET /metrics at the root), summed over labels:
        {"vllm:prefix_cache_hits_total": 1234.0, ...}; {} when it has none."""
        parts = urlsplit(self.endpoint)
        exchange = _Exchange(f"{parts.scheme}://{parts.netloc}", self.connect_timeout, lambda: False)
        deadline = time.monotonic() + timeout
        try:
            exchange.send("GET", "/metrics", self._headers(), None, deadline)
            response = exchange.read_head(deadline)
            raw = b"".join(exchange.body(response, lambda: deadline))
        except (_ConnectionLost, _Timeout, RemoteError):
            return {}
        finally:
            exchange.close()
        out: dict[str, float] = {}
        if response.status != 200:
            return out
        for line in raw.decode("utf-8", "replace").splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            try:
                out[name.split("{", 1)[0]] = out.get(name.split("{", 1)[0], 0.0) + float(value)
            except ValueError:
                pass
        return out

    def _probe(self) -> None:
        """Learn the served context length once the server answers (it was down at start)."""
        try:
            served = self.models(timeout=self.connect_timeout)
        except RemoteError:
            return
        self.probed = True
        entry = next((m for m in served if m["id"] == self.model_name), None)
        length = entry.get("max_model_len") if entry else None
        if isinstance(length, int) and length > 0:
            self.n_positions = length

    def _served_names(self) -> list[str] | None:
        try:
            return [m["id"] for m in self.models()]
        except RemoteError:
            return None

    # -- what the user is told ------------------------------------------------------------------------
    def _failed(self, err: RemoteError) -> None:
        with self._lock:
            self.remote.requests += 1
            self.remote.errors += 1
            self.remote.reachable = err.kind not in ("unreachable", "timeout")
            self.remote.last_error = str(err)
            tell = str(err) != self._reported
            self._reported = str(err)
        if tell and self.on_event is not None:
            log.warning("%s", err)
            self.on_event(str(err))
        else:  # told already, or the caller reports the error itself (the CLI)
            log.debug("%s", err)

    def _answered(self, total_ms: float, first_ms: float | None, complete: bool) -> None:
        with self._lock:
            self.remote.requests += 1
            self.remote.reachable = True
            if complete:
                self.remote.last_latency_ms = total_ms
                self.remote.last_first_token_ms = first_ms
                self.remote.latencies_ms.append(total_ms)
                del self.remote.latencies_ms[:-1000]
            recovered = bool(self._reported)
            self._reported = ""
            self.remote.last_error = ""
        if recovered:
            message = f"{self.endpoint} answers again ({self.model_name})"
            log.warning("%s", message)
            if self.on_event is not None:
                self.on_event(message)


class _RetryAsText(Exception):
    pass


class _NotConstrained(Exception):
    """The server ignored ("ignored") or refused the healing constraint."""


_REGEX_SPECIAL = set(".^$*+?()[]{}|\\/-")


def healing_regex(healed: str) -> str:
    """A regex for answers that start with `healed`. After healed blanks the next character may
    not be a blank: the indentation is the user's own (as in-process, engine/generate.py)."""
    escaped = "".join("\\" + ch if ch in _REGEX_SPECIAL else {"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(ch, ch)
                      for ch in healed)
    return escaped + ("([^\\s][\\s\\S]*)?" if healed[-1:].isspace() else "[\\s\\S]*")


def _sleep(seconds: float, cancelled: Callable[[], bool]) -> bool:
    """Sleep, waking to look at `cancelled`; True if it turned true."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cancelled():
            return True
        time.sleep(min(POLL_S, max(0.0, end - time.monotonic())))
    return cancelled()


def _error_message(raw: bytes) -> str:
    """The message of an OpenAI-style error body ({"error": {"message": ...}} or {"message": ...})."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or "")[:300]
        if isinstance(err, str):
            return err[:300]
        if "detail" in data:
            return str(data["detail"])[:300]
    return ""


def _error_from_event(err: Any, endpoint: str) -> RemoteError:
    message = str(err.get("message", err)) if isinstance(err, dict) else str(err)
    code = err.get("code") if isinstance(err, dict) else None
    if _CONTEXT_RE.search(message):
        return RemoteError("context", f"the prompt is too long for the served model ({message}); lower the "
                                      "contextBudget or maxNewTokens option")
    kind = "server" if not isinstance(code, int) or code >= 500 else "request"
    return RemoteError(kind, f"{endpoint} failed while answering: {message}")


def model_not_served(endpoint: str, model: str, served: list[str]) -> str:
    listing = ", ".join(served) if served else "nothing"
    return f"{endpoint} does not serve a model named '{model}'; it serves: {listing}. Set the model option to " \
           "the served name (vLLM: --served-model-name)"


# -- loading --------------------------------------------------------------------------------------
def find_tokenizer(names: list[str], revision: str | None, allow_download: bool) -> Path | None:
    """tokenizer.json for the first of `names` found: `bundled`, a local directory, a hub id in the
    local Hugging Face cache, or (downloads allowed, hub reachable) fetched: tokenizer.json alone."""
    from santa_lsp.engine.hub import BUNDLED_DIR, hub_reachable, offline_mode

    for name in names:
        if not name:
            continue
        if name == "bundled":
            return BUNDLED_DIR / "tokenizer.json"
        path = Path(name).expanduser()
        if (path / "tokenizer.json").is_file():
            return path / "tokenizer.json"
        if path.is_absolute() or name.startswith(("./", "../", "~")) or name.count("/") != 1:
            continue
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(name, "tokenizer.json", revision=revision, local_files_only=True))
        except Exception:  # not cached
            pass
        if allow_download and not offline_mode() and hub_reachable():
            try:
                return Path(hf_hub_download(name, "tokenizer.json", revision=revision))
            except Exception as err:
                log.info("no tokenizer.json for %s on the hub: %s", name, err)
    return None


def _config_positions(tokenizer_path: Path) -> int | None:
    try:
        raw = json.loads((tokenizer_path.parent / "config.json").read_text(encoding="utf-8"))
        value = raw.get("n_positions") or raw.get("max_position_embeddings")
        return int(value) if value else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def connect(endpoint: str, model: str, revision: str | None = None, allow_download: bool = True,
            on_warning: Callable[[str], None] | None = None, on_event: Callable[[str], None] | None = None,
            **timeouts: Any) -> RemoteEngine:
    """A RemoteEngine for `model` served at `endpoint`, checked against the server's model list.

    Errors the user must fix (bad endpoint, key refused, model not served, no tokenizer) raise
    ModelLoadError. A server that is down or failing only warns: requests fail until it is
    back, then work, without a reload.
    """
    try:
        endpoint = normalize_endpoint(endpoint)
    except InvalidOption as err:
        raise ModelLoadError(model, str(err), "Set the endpoint option to the server's base URL, "
                                              "e.g. http://127.0.0.1:8000/v1.") from None
    probe = RemoteEngine(endpoint, model, tokenizer=None, **timeouts)  # type: ignore[arg-type]
    entry: dict[str, Any] | None = None
    try:
        served = probe.models()
    except RemoteError as err:
        if err.kind in ("auth", "request", "protocol"):
            raise ModelLoadError(model, str(err)) from None
        warning = f"{err}. Completions start once it answers."
        log.warning("%s", warning)
        if on_warning is not None:
            on_warning(warning)
        probe.remote.reachable, probe._reported = False, str(err)
    else:
        entry = next((m for m in served if m["id"] == model), None)
        if entry is None:
            raise ModelLoadError(model, model_not_served(endpoint, model, [m["id"] for m in served]))
    root = entry.get("root") if entry else None
    path = find_tokenizer([model, root if isinstance(root, str) else ""], revision, allow_download)
    if path is None:
        raise ModelLoadError(model, "santa-lsp builds the prompt with the served model's tokenizer and found no "
                                    "tokenizer.json for it",
                             "Name the model as its hub id or local directory (vLLM: --served-model-name the same), "
                             "or run `santa-lsp download <hub id>` once.")
    tokenizer = Tokenizer(path, model)
    n_positions = _config_positions(path) or DEFAULT_N_POSITIONS
    served_len = entry.get("max_model_len") if entry else None
    if isinstance(served_len, int) and served_len > 0:
        n_positions = served_len
    engine = RemoteEngine(endpoint, model, tokenizer, n_positions, on_event=on_event, **timeouts)
    engine.probed = entry is not None
    engine.remote.reachable, engine._reported = probe.remote.reachable, probe._reported
    engine.remote.last_error = probe._reported
    return engine
