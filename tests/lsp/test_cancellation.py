"""Scheduling: inference off the event loop, newest request per document wins, $/cancelRequest."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsp_helpers import URI, command, inline_params, open_doc
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Every request asks at another line, so that no answer can come from the typing-ahead cache.
LINE = "v{} = print("
TEXT = "".join(LINE.format(i) + "\n" for i in range(10))
MAX_NEW_TOKENS = 300  # slow_client's maxNewTokens


def request(client, uri: str, line: int, msg_id: str | None = None) -> asyncio.Task:
    """Send an inline completion request (at the next await) without waiting for the answer."""
    params = inline_params(line, len(LINE.format(line)), uri)
    return asyncio.ensure_future(
        client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id))


async def full_generation_s(client, uri: str, line: int) -> float:
    t0 = time.monotonic()
    result = await request(client, uri, line)
    assert result.items, "the slow model should suggest something"
    return time.monotonic() - t0


_PACE: list[float] = []


async def pace(client, uri: str) -> float:
    """Seconds one whole 300-token suggestion takes on this machine (the faster of two, measured
    once): the tests below type and cancel at fractions of it, because a fast, quiet machine
    writes the whole suggestion in a fraction of the time a busy one takes."""
    if not _PACE:
        _PACE.append(min([await full_generation_s(client, uri, 8), await full_generation_s(client, uri, 9)]))
    return _PACE[0]


async def test_burst_newest_wins(slow_client):
    """Neovim-style: a request per keystroke, none cancelled by the client."""
    uri = URI.replace("example", "burst")
    open_doc(slow_client, TEXT, uri)
    one = await pace(slow_client, uri)
    before = (await command(slow_client, "santa.status"))["stats"]
    t0 = time.monotonic()
    burst = []
    for line in range(5):
        burst.append(request(slow_client, uri, line))
        await asyncio.sleep(min(0.05, one * 0.1))
    results = await asyncio.gather(*burst)
    elapsed = time.monotonic() - t0
    assert [bool(r.items) for r in results] == [False] * 4 + [True]
    assert elapsed < 0.25 + one * 3, f"stale requests were not stopped ({elapsed:.2f}s, one takes {one:.2f}s)"
    after = (await command(slow_client, "santa.status"))["stats"]
    assert after["cancelled"] - before["cancelled"] == 4


async def test_typing(slow_client):
    """An edit and a request per keystroke: each edit cancels the request before it."""
    uri = URI.replace("example", "keystrokes")
    open_doc(slow_client, TEXT, uri)
    one = await pace(slow_client, uri)
    before = (await command(slow_client, "santa.status"))["stats"]
    line, column, pending = 3, len(LINE.format(3)), []
    for version, char in enumerate("[[[[", start=2):
        slow_client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(line, column), types.Position(line, column)), text=char)]))
        column += 1
        pending.append(asyncio.ensure_future(slow_client.text_document_inline_completion_async(
            inline_params(line, column, uri))))
        await asyncio.sleep(min(0.1, one * 0.1))
    results = await asyncio.gather(*pending)
    assert [bool(r.items) for r in results] == [False] * 3 + [True]
    assert results[-1].items[0].range.start == types.Position(line, column)
    after = (await command(slow_client, "santa.status"))["stats"]
    assert after["cancelled"] - before["cancelled"] == 3 and after["completed"] - before["completed"] == 1


async def test_events_processed_during_generation(slow_client):
    uri = URI.replace("example", "typing")
    open_doc(slow_client, TEXT, uri)
    one = await pace(slow_client, uri)
    pending = request(slow_client, uri, 1)
    await asyncio.sleep(min(0.2, one * 0.15))
    t0 = time.monotonic()
    await command(slow_client, "santa.status")  # answered while the worker generates
    assert time.monotonic() - t0 < 1.0
    slow_client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(1, 10), types.Position(1, 10)), text="[")]))
    stale = await asyncio.wait_for(pending, timeout=2.0)  # the edit cancels it within a step
    assert not stale.items
    fresh = await slow_client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(1, 11, uri))
    assert fresh.items[0].insert_text.startswith("[")  # computed on the edited text


async def test_cancel_request(slow_client):
    uri = URI.replace("example", "cancelled")
    open_doc(slow_client, TEXT, uri)
    one = await pace(slow_client, uri)
    generated = (await command(slow_client, "santa.status"))["stats"]["generatedTokens"]
    pending = request(slow_client, uri, 1, msg_id="santa-test-cancel")
    await asyncio.sleep(min(0.2, one * 0.15))
    slow_client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="santa-test-cancel"))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(pending, timeout=2.0)
    # The worker stopped too, long before its MAX_NEW_TOKENS.
    deadline = time.monotonic() + 2.0
    while (status := await command(slow_client, "santa.status"))["stats"]["generatedTokens"] == generated:
        assert time.monotonic() < deadline, "the cancelled generation did not stop"
        await asyncio.sleep(0.02)
    assert status["stats"]["generatedTokens"] - generated < MAX_NEW_TOKENS * 0.8
    assert status["stats"]["cancelled"] >= 1
