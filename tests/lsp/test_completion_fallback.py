"""textDocument/completion, only for clients that do not declare inline completion support."""

from __future__ import annotations

import pytest
from lsp_helpers import PROMPT, URI, open_doc
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_advertised_only_without_inline_support(plain_client, client):
    assert plain_client.init_result.capabilities.completion_provider is not None
    assert client.init_result.capabilities.completion_provider is None


async def test_suggestion_as_a_completion_item(plain_client):
    uri = URI.replace("example", "fallback")
    open_doc(plain_client, PROMPT, uri)
    cursor = types.Position(PROMPT.count("\n"), len("print("))
    result = await plain_client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=cursor))
    assert isinstance(result, types.CompletionList) and result.is_incomplete
    (item,) = result.items
    assert item.text_edit.range == types.Range(cursor, cursor)
    assert item.text_edit.new_text.startswith("(") and item.label
    assert item.insert_text_format == types.InsertTextFormat.PlainText


async def test_item_covers_the_partial_word(plain_client):
    """Completion clients filter items by the word before the cursor: the item must start with it."""
    uri = URI.replace("example", "partial-word")
    text = "import os\nvalue = os.pa"
    open_doc(plain_client, text, uri)
    cursor = types.Position(1, len("value = os.pa"))
    # The tiny model repeats the last token ("a"); without token healing, and kept short enough
    # not to count as degenerate repetition, that makes a suggestion after a partial word.
    configure = types.DidChangeConfigurationParams(settings={"santa": {"tokenHealing": False, "maxNewTokens": 2}})
    plain_client.workspace_did_change_configuration(configure)
    try:
        result = await plain_client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=cursor))
    finally:
        plain_client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={}))
    (item,) = result.items
    assert item.text_edit.range == types.Range(types.Position(1, len("value = os.")), cursor)
    assert item.text_edit.new_text.startswith("pa") and item.filter_text == item.text_edit.new_text
    assert item.label.startswith("pa")
