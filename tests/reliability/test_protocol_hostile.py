"""Issue 14, items 4-7: messages that were never answered, or answered wrongly, by a real
server over stdio (a raw JSON-RPC client, no LSP library in between)."""

from __future__ import annotations

import json
import time

import pytest
from hostile_client import bare_session, frame, raw_frame, start_bare

STATUS = {"command": "santa.status", "arguments": []}
URI = "file:///hostile/doc.py"


def request(msg_id, method="workspace/executeCommand", params=STATUS, **extra):
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params, **extra}


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    yield from bare_session(tmp_path_factory.mktemp("protocol") / "stderr.log")


def answered(client, msg_id, timeout=15):
    reply = client.wait(msg_id, timeout)
    assert reply is not None, f"no answer to {msg_id!r}"
    return reply


def test_invalid_utf8_body_is_answered(bare):
    data = json.dumps(request("utf8")).encode().replace(b"santa.status", b"santa.st\xffatus")
    assert bare.write(raw_frame(data))
    reply = answered(bare, "utf8")
    assert "error" in reply and "\ufffd" in reply["error"]["message"]  # read with U+FFFD, answered


def test_deep_array_and_broken_json_get_parse_errors(bare):
    assert bare.write(raw_frame(b"[" * 200_000 + b"]" * 200_000))
    assert bare.write(raw_frame(json.dumps(request("broken")).encode()[:-9]))
    reply = answered(bare, "broken")
    assert reply["error"]["code"] == -32700
    assert answered(bare, None)["error"]["code"] in (-32700, -32600)
    assert bare.status() is not None


@pytest.mark.parametrize("version", ["1.0", None, 2])
def test_wrong_or_missing_jsonrpc_is_invalid_request(bare, version):
    msg = request(f"v-{version}")
    if version is None:
        del msg["jsonrpc"]
    else:
        msg["jsonrpc"] = version
    assert bare.write(frame(msg))
    assert answered(bare, f"v-{version}")["error"]["code"] == -32600


def test_batch_requests_are_each_answered(bare):
    assert bare.write(frame([request("batch-1"), request("batch-2"), {"jsonrpc": "2.0", "method": "initialized"}]))
    for msg_id in ("batch-1", "batch-2"):
        assert answered(bare, msg_id)["error"]["code"] == -32600


def test_notification_method_sent_with_an_id_is_answered(bare):
    assert bare.write(frame(request("as-request", "$/setTrace", {"value": "off"})))
    assert answered(bare, "as-request")["error"]["code"] == -32600


def test_nested_request_shaped_object_is_only_params(bare):
    """Before: pygls turned the nested object into a message and answered id "ghost" (an id
    the client never used), swallowing the real request's answer."""
    params = {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 0},
              "context": {"triggerKind": 1, "ghost": request("ghost", "shutdown", None)}}
    assert bare.write(frame(request("real", "textDocument/inlineCompletion", params)))
    reply = answered(bare, "real")
    assert reply.get("result") == {"items": []}, reply
    time.sleep(0.3)
    assert "ghost" not in bare.responses
    # And in a notification's params: nothing answered, nothing shut down.
    bare.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python", "version": 1,
                                                          "text": "x = 1\n", "extra": request("ghost2", "shutdown")}})
    assert bare.status() is not None
    assert "ghost2" not in bare.responses


def test_second_initialize_is_refused_and_documents_kept(bare):
    bare.open(URI, "line one\n")
    reply = bare.request("initialize", {"processId": None, "capabilities": {}}, 15)
    assert reply is not None and reply["error"]["code"] == -32600, reply
    # The document is still open: an edit to it is applied without complaint (an edit to a
    # document that is not open is logged as such, as the second line shows).
    before = bare.log.read_text(errors="replace")
    bare.change(URI, 2, 0, 4, " two")
    bare.change("file:///hostile/never-opened.py", 2, 0, 0, "x")
    assert bare.status() is not None
    time.sleep(0.2)
    logged = bare.log.read_text(errors="replace")[len(before):]
    assert "never-opened.py, which is not open" in logged
    assert "doc.py, which is not open" not in logged


def test_requests_before_initialize_and_after_shutdown(tmp_path):
    client = start_bare(tmp_path / "stderr.log", initialize=False)
    try:
        reply = client.request("workspace/executeCommand", STATUS, 15)
        assert reply is not None and reply["error"]["code"] == -32002, reply
        assert "data" not in reply["error"]  # no traceback
        client.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python", "version": 1,
                                                                "text": ""}})  # dropped, quietly
        reply = client.request("initialize", {"processId": 2**40, "capabilities": {},
                                              "initializationOptions": {"enable": False}}, 30)
        assert reply is not None and "result" in reply, reply  # processId 2^40: not a process, not an error
        client.notify("initialized", {})
        assert client.status() is not None
        assert client.request("shutdown", None, 15).get("result", "missing") is None
        for method, params in (("workspace/executeCommand", STATUS), ("shutdown", None)):
            reply = client.request(method, params, 15)
            assert reply is not None and reply["error"]["code"] == -32600, (method, reply)
        client.notify("exit")
        assert client.proc.wait(10) == 0
    finally:
        client.close()


def test_internal_errors_carry_no_traceback(bare):
    # workspace/executeCommand with a command that raises inside pygls' own handler
    reply = bare.request("workspace/executeCommand", {"command": "santa.status", "arguments": "not-a-list"}, 15)
    assert reply is not None
    assert "traceback" not in json.dumps(reply).lower()
