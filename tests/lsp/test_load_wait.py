"""A request that arrives while the model loads waits for it and is answered when it is ready
(the newest per document; bounded by SANTA_LSP_LOAD_WAIT_S). The slow load is real: the
server sleeps SANTA_LSP_TEST_LOAD_DELAY_S seconds before loading."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsp_helpers import URI, PROMPT, close_session, command, inline_params, open_doc, open_session, wait_state
from lsprotocol import types

DELAY_S = 3.0


@pytest.mark.asyncio(loop_scope="session")
async def test_first_request_waits_for_the_model(tiny_model_dir):
    client = await open_session({"model": str(tiny_model_dir), "maxNewTokens": 8},
                                env={"SANTA_LSP_TEST_LOAD_DELAY_S": str(DELAY_S)})
    try:
        open_doc(client, PROMPT)
        cursor = (PROMPT.count("\n"), len("print("))
        t0 = time.monotonic()
        first = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(*cursor)))
        await asyncio.sleep(0.3)
        assert not first.done()  # waiting, not answered empty
        assert (await command(client, "santa.status"))["state"] == "loading"
        # A newer request for the same document wins: the older one ends empty at once.
        second = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(*cursor)))
        superseded = await asyncio.wait_for(first, 2)
        assert not superseded.items and time.monotonic() - t0 < 2
        answer = await asyncio.wait_for(second, 60)
        assert answer.items and answer.items[0].insert_text
        assert time.monotonic() - t0 >= DELAY_S  # answered after the load, not before
        assert client.statuses[-1].state == "ready"
        stats = (await command(client, "santa.status"))["stats"]
        assert stats["waitedForLoad"] == 2 and stats["suggestions"] == 1
    finally:
        await close_session(client)


@pytest.mark.asyncio(loop_scope="session")
async def test_wait_is_bounded_and_an_edit_ends_it(tiny_model_dir):
    client = await open_session({"model": str(tiny_model_dir)},
                                env={"SANTA_LSP_TEST_LOAD_DELAY_S": "60", "SANTA_LSP_LOAD_WAIT_S": "1"})
    try:
        open_doc(client, PROMPT)
        cursor = (PROMPT.count("\n"), len("print("))
        t0 = time.monotonic()
        answer = await client.text_document_inline_completion_async(inline_params(*cursor))
        waited = time.monotonic() - t0
        assert not answer.items and 0.9 <= waited < 5
        # An edit ends the wait of a request about the old text.
        pending = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(*cursor)))
        await asyncio.sleep(0.2)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=PROMPT + "x")]))
        assert not (await asyncio.wait_for(pending, 0.7)).items
        assert (await command(client, "santa.status"))["state"] == "loading"
    finally:
        await close_session(client)


@pytest.mark.asyncio(loop_scope="session")
async def test_waiting_request_ends_when_the_load_fails(tmp_path):
    client = await open_session({"model": str(tmp_path / "no-such-model")},
                                env={"SANTA_LSP_TEST_LOAD_DELAY_S": "1"})
    try:
        open_doc(client, PROMPT)
        answer = await client.text_document_inline_completion_async(inline_params(PROMPT.count("\n"), 6))
        assert not answer.items
        assert (await wait_state(client, ("error",), timeout=5))["state"] == "error"
    finally:
        await close_session(client)
