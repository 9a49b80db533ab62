"""Fuzzing the JSON-RPC boundary of a running server: random bytes, broken framing, malformed
JSON, wrong types, wrong params, unknown methods, random cancellations and configurations.

Every well-formed request (string id, a method that is not a notification's) must be answered, with a result or an
error; afterwards the server must still answer status and completion requests. `shutdown`,
`exit` and `initialize` are left out of the random methods: they do what they say.
"""

from __future__ import annotations

import json
import string

from reliability_helpers import FUZZ_EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.lsp_client import RawClient, frame

# The CI slice is derandomized (the same cases every run, no flaky discoveries); full runs explore.
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=FUZZ_EXAMPLES <= 100,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

METHODS = ["textDocument/inlineCompletion", "textDocument/completion", "textDocument/didOpen",
           "textDocument/didChange", "textDocument/didClose", "textDocument/didSave", "workspace/executeCommand",
           "workspace/didChangeConfiguration", "$/cancelRequest", "$/setTrace", "initialized", "textDocument/hover",
           "santa/unknown", "", "textDocument/inlineCompletion/", "x" * 300]
NOTIFICATIONS = {m for m in METHODS if m.startswith(("textDocument/did", "workspace/did", "$/"))} | {"initialized"}
URIS = ["file:///fuzz/a.py", "file:///fuzz/b.py", "untitled:Untitled-1", "file:///fuzz/%E2%9C%93.py", "", "::::"]
TEXT = st.text(alphabet=st.one_of(st.sampled_from(list(string.printable) + ["\U0001f40d", "\ud83d", "\0", "\r"]),
                                  st.characters()), max_size=60)
NUMBER = st.one_of(st.integers(-2**40, 2**40), st.integers(-2, 60), st.floats(allow_nan=False, allow_infinity=False))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=10)
POSITION = st.fixed_dictionaries({"line": st.one_of(st.integers(-2, 40), JSON), "character": st.one_of(st.integers(-2, 400), JSON)})
DOC_ID = st.fixed_dictionaries({"uri": st.one_of(st.sampled_from(URIS), JSON)},
                               optional={"version": st.one_of(st.integers(-1, 10**9), JSON)})
# Params shaped like the real ones, with any part wrong: what a buggy client sends.
PARAMS = st.one_of(
    JSON,
    st.fixed_dictionaries({"textDocument": DOC_ID, "position": POSITION},
                          optional={"context": st.one_of(st.just({"triggerKind": 1}), st.just({"triggerKind": 2}), JSON)}),
    st.fixed_dictionaries({"textDocument": st.fixed_dictionaries({
        "uri": st.sampled_from(URIS), "languageId": st.one_of(st.just("python"), JSON),
        "version": st.one_of(st.integers(0, 9), JSON), "text": st.one_of(TEXT, JSON)})}),
    st.fixed_dictionaries({"textDocument": DOC_ID, "contentChanges": st.lists(st.one_of(
        st.fixed_dictionaries({"text": st.one_of(TEXT, JSON)}),
        st.fixed_dictionaries({"range": st.fixed_dictionaries({"start": POSITION, "end": POSITION}),
                               "text": st.one_of(TEXT, JSON)}), JSON), max_size=3)}),
    st.fixed_dictionaries({"command": st.sampled_from(["santa.status", "santa.nothing", ""]),
                           "arguments": st.one_of(st.lists(JSON, max_size=2), JSON)}),
    st.fixed_dictionaries({"settings": st.one_of(JSON, st.fixed_dictionaries({"santa": st.dictionaries(
        st.sampled_from(["maxNewTokens", "mode", "fimOrder", "debounceMs", "enable", "suffixShare", "bogus"]), JSON)}))}),
    st.fixed_dictionaries({"id": st.one_of(st.integers(), TEXT, JSON)}),
)
ODD_ID = st.one_of(st.none(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                   st.dictionaries(TEXT, st.integers(), max_size=2))


@st.composite
def messages(draw):
    """(bytes to send, id of a request that must be answered or None)."""
    kind = draw(st.sampled_from(["request", "request", "notification", "odd-id", "response", "json", "bytes",
                                 "broken-json", "headers"]))
    if kind == "bytes":
        return frame_bytes(draw(st.binary(max_size=200))), None
    if kind == "json":
        return frame_bytes(json.dumps(draw(JSON)).encode()), None
    if kind == "broken-json":
        text = json.dumps({"jsonrpc": "2.0", "id": 1, "method": draw(st.sampled_from(METHODS)), "params": draw(PARAMS)})
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        return frame_bytes(text[:cut].encode("utf-8", "surrogatepass")), None
    if kind == "headers":
        # Header lines the server must skip: unknown headers, junk, wrong case, blank lines.
        junk = draw(st.lists(st.sampled_from([b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n",
                                              b"X-Junk: \xff\xfe\r\n", b"content-length: 5\r\n", b"\r\n",
                                              b"Content-Length: abc\r\n", b"garbage without colon\n"]), max_size=4))
        return b"".join(junk) + frame({"jsonrpc": "2.0", "method": "$/setTrace", "params": {"value": "off"}}), None
    method = draw(st.sampled_from(METHODS))
    message = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", None])), "method": method,
               "params": draw(PARAMS)}
    if message["jsonrpc"] is None:
        del message["jsonrpc"]
    if draw(st.booleans()):
        message["extra"] = draw(JSON)
    if kind == "notification":
        return body(message), None
    if kind == "odd-id":
        message["id"] = draw(ODD_ID)
        return body(message), None
    if kind == "response":
        return body({"jsonrpc": "2.0", "id": draw(st.one_of(st.integers(), TEXT)), "result": draw(JSON)}), None
    msg_id = f"fuzz-{draw(st.integers(0, 10**12))}"
    message["id"] = msg_id
    # A request must be answered; a notification's method sent with an id is a client bug that
    # pygls treats as the notification (no answer), so only request methods are checked.
    answered = message.get("jsonrpc") == "2.0" and method not in NOTIFICATIONS
    return body(message), msg_id if answered else None


def body(message) -> bytes:
    return frame_bytes(json.dumps(message).encode("utf-8", "surrogatepass"))


def frame_bytes(data: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(data), data)


def still_serves(client: RawClient, uri: str = "file:///fuzz/after.py") -> None:
    status = client.status(timeout=20)
    assert status is not None, "no answer to santa.status"
    assert client.proc.poll() is None
    client.open(uri, "import os\n\nprint(")
    reply = client.wait(client.inline(uri, 2, 6), 20)
    assert reply is not None and "result" in reply, reply


def restore(client: RawClient, model_dir) -> None:
    """Undo whatever configuration the fuzz sent, and wait for the model."""
    client.notify("workspace/didChangeConfiguration", {"settings": {"santa": {"model": str(model_dir),
                                                                             "maxNewTokens": 8}}})
    client.wait_ready(timeout=60)


@FUZZ
@given(st.lists(messages(), min_size=1, max_size=4))
def test_any_message(shared_server, batch):
    for data, _ in batch:
        assert shared_server.write(data), "the server stopped reading"
    for _, msg_id in batch:
        if msg_id is not None:
            assert shared_server.wait(msg_id, 20) is not None, f"request {msg_id} never answered"
    assert shared_server.proc.poll() is None


def test_still_serves_after_fuzz(shared_server, tiny_model_dir):
    restore(shared_server, tiny_model_dir)
    still_serves(shared_server)


def test_framing_abuse(shared_server, tiny_model_dir):
    """Framing the server must survive: a 200 kB header line, invalid UTF-8 bodies, a body that
    is not an object, an empty body, a wrong protocol version; then it still answers."""
    c = shared_server
    for data in [b"x" * 200_000 + b"\r\n", frame_bytes(b"\xff\xfe\xfd"), frame_bytes(b"[]"), frame_bytes(b"null"),
                 frame_bytes(b'"just a string"'), b"Content-Length: 0\r\n\r\n",
                 frame_bytes(b'{"jsonrpc": "1.0", "id": "v1", "method": "workspace/executeCommand"}'),
                 frame_bytes(b'{"jsonrpc": "2.0", "id": "deep", "method": "santa/x", "params": '
                             + b"[" * 100_000 + b"]" * 100_000 + b"}")]:
        assert c.write(data)
    reply = c.request("workspace/executeCommand", {"command": "santa.status", "arguments": []}, 20)
    assert reply is not None and reply["result"]["state"]
    restore(c, tiny_model_dir)
    still_serves(c, "file:///fuzz/framing.py")


def test_invalid_params_are_answered(shared_server):
    """Regression: pygls used to drop requests whose params did not deserialize (no answer at all)."""
    c = shared_server
    for params in [None, {"textDocument": {"uri": 5}, "position": {"line": -1, "character": "x"}}, [1, 2]]:
        reply = c.request("textDocument/inlineCompletion", params, 20)
        assert reply is not None and reply["error"]["code"] == -32602
