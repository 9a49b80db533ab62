"""Bad requests get an empty answer (or a clean error) and the server stays up."""

from __future__ import annotations

import pytest
from lsp_helpers import URI, command, inline_params, open_doc
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")

TEXT = "def f():\n    return print(\n"


async def alive(client) -> None:
    assert (await command(client, "santa.status"))["state"] == "ready"


async def test_unknown_document(client):
    result = await client.text_document_inline_completion_async(inline_params(0, 0, "file:///never/opened.py"))
    assert not result.items
    await alive(client)


async def test_line_past_the_end(client):
    uri = URI.replace("example", "short")
    open_doc(client, TEXT, uri)
    result = await client.text_document_inline_completion_async(inline_params(7, 0, uri))
    assert not result.items
    await alive(client)


async def test_character_past_the_line_end_means_its_end(client):
    uri = URI.replace("example", "short-line")
    open_doc(client, TEXT, uri)
    result = await client.text_document_inline_completion_async(inline_params(1, 400, uri))
    (item,) = result.items  # the LSP rule: a character past the end is the end of the line
    assert item.range.start == types.Position(1, len("    return print("))


async def test_closed_document(client):
    uri = URI.replace("example", "closed")
    open_doc(client, TEXT, uri)
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri)))
    result = await client.text_document_inline_completion_async(inline_params(1, 4, uri))
    assert not result.items
    await alive(client)


async def test_unknown_command_is_an_error_not_a_crash(client):
    with pytest.raises(Exception, match="santa.nope"):
        await command(client, "santa.nope")
    await alive(client)
