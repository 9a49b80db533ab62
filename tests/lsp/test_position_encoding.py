"""positionEncoding: UTF-16 by default, UTF-8 when offered; correct around emoji, CJK, combining marks."""

from __future__ import annotations

import pytest
from lsp_helpers import URI, inline_params, open_doc
from lsprotocol import types

from santa_lsp.lsp.positions import UTF8, UTF16

pytestmark = pytest.mark.asyncio(loop_scope="session")

# An emoji (2 UTF-16 / 4 UTF-8 units), CJK (1 / 3), e + combining acute (1+1 / 1+2) before the cursor.
LINE = "s = '😀名e\u0301'; print("
TEXT = "# 😀\n" + LINE + "\n"


def units(text: str, encoding: str) -> int:
    return len(text.encode("utf-16-le")) // 2 if encoding == UTF16 else len(text.encode("utf-8"))


async def test_utf16_range(client):
    uri = URI.replace("example", "emoji16")
    open_doc(client, TEXT, uri)
    result = await client.text_document_inline_completion_async(inline_params(1, units(LINE, UTF16), uri))
    (item,) = result.items
    assert item.range.start == types.Position(1, len(LINE) + 1)  # 😀 counts twice in UTF-16
    assert item.insert_text.startswith("(")


async def test_utf8_negotiated_and_used(plain_client):
    assert plain_client.init_result.capabilities.position_encoding == types.PositionEncodingKind.Utf8
    uri = URI.replace("example", "emoji8")
    open_doc(plain_client, TEXT, uri)
    cursor = units(LINE, UTF8)
    assert cursor == len(LINE) + 3 + 2 + 1  # 😀 4 bytes, 名 3, the combining accent 2
    result = await plain_client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(1, cursor)))
    (item,) = result.items
    assert item.text_edit.range.start == types.Position(1, cursor)
    assert item.text_edit.new_text.startswith("(")


async def test_inside_a_surrogate_pair_is_answered_empty(client):
    uri = URI.replace("example", "surrogate")
    open_doc(client, "x = '😀'\n", uri)
    result = await client.text_document_inline_completion_async(inline_params(0, 6, uri))
    assert not result.items
