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
