"""textDocument/inlineCompletion: an item with the text to insert and the range it replaces."""

from __future__ import annotations

import pytest
from lsp_helpers import PROMPT, URI, command, inline_params, open_doc
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_returns_an_item_at_the_cursor(client):
    open_doc(client, PROMPT)
    line, char = PROMPT.count("\n"), len(PROMPT.rsplit("\n", 1)[1])
    result = await client.text_document_inline_completion_async(inline_params(line, char))
    assert isinstance(result, types.InlineCompletionList)
    (item,) = result.items
    assert item.insert_text.strip()
    cursor = types.Position(line, char)
    assert item.range == types.Range(cursor, cursor)


async def test_follows_incremental_edits(client):
    uri = URI.replace("example", "edited")
    open_doc(client, "x = 1\n", uri)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(1, 0), types.Position(1, 0)), text="print(")]))
    result = await client.text_document_inline_completion_async(inline_params(1, 6, uri))
    (item,) = result.items
    assert item.insert_text.startswith("(")  # the tiny model repeats the last token: it saw the edit


async def test_counts_requests(client):
    before = (await command(client, "santa.status"))["stats"]
    await client.text_document_inline_completion_async(inline_params(2, 6))
    after = (await command(client, "santa.status"))["stats"]
    assert after["requests"] == before["requests"] + 1
    assert after["computedTokens"] > 0 and after["latencyMs"]["p50"] is not None


async def test_edits_after_unusual_line_breaks(client):
    # LSP lines end only at \n, \r\n, \r: the form feed and U+2028 are inside lines 0 and 1.
    uri = URI.replace("example", "formfeed")
    open_doc(client, "a = 1\f\nb = '\u2028'\n", uri)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(2, 0), types.Position(2, 0)), text="print(")]))
    result = await client.text_document_inline_completion_async(inline_params(2, 6, uri))
    (item,) = result.items
    assert item.insert_text.startswith("(")


async def test_continues_the_selected_completion_item(client):
    """LSP 3.18 selectedCompletionInfo: complete as if the menu's item were accepted, starting with it."""
    uri = URI.replace("example", "selected")
    open_doc(client, "x = pr\n", uri)
    selected = types.Range(types.Position(0, 4), types.Position(0, 6))
    params = inline_params(0, 6, uri)
    params.context = types.InlineCompletionContext(
        trigger_kind=types.InlineCompletionTriggerKind.Automatic,
        selected_completion_info=types.SelectedCompletionInfo(range=selected, text="print("))
    (item,) = (await client.text_document_inline_completion_async(params)).items
    assert item.range == selected
    assert item.insert_text.startswith("print((")  # the tiny model repeats the item's last token
