"""Local acceptance feedback: suggestions shown, accepted, partially accepted and dismissed,
per language, counted through the item's command (`santa.accepted`) and shown in santa.status."""

from __future__ import annotations

import pytest
from lsp_helpers import PROMPT, URI, command, inline_params, open_doc
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def suggest(client, uri):
    result = await client.text_document_inline_completion_async(inline_params(PROMPT.count("\n"), 6, uri))
    (item,) = result.items
    return item


async def test_acceptance_is_counted_per_language(client):
    uri = URI.replace("example", "accepted")
    open_doc(client, PROMPT, uri)
    before = (await command(client, "santa.status"))["acceptance"]
    item = await suggest(client, uri)
    assert item.command is not None and item.command.command == "santa.accepted"
    # What an editor does after inserting the item: run its command.
    assert await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=item.command.command, arguments=item.command.arguments)) is True
    second = await suggest(client, uri)
    assert await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="santa.accepted", arguments=[*second.command.arguments, "word"])) is True
    await suggest(client, uri)  # a third, never taken: dismissed once the next request comes
    await suggest(client, uri)
    after = (await command(client, "santa.status"))["acceptance"]
    python, old = after["python"], before.get("python", {})
    delta = {k: python[k] - old.get(k, 0) for k in python}
    assert delta == {"shown": 4, "accepted": 1, "partiallyAccepted": 1, "dismissed": 1}
    assert after["total"]["shown"] >= 4


async def test_late_accept_and_bad_arguments(client):
    uri = URI.replace("example", "late")
    open_doc(client, PROMPT, uri)
    first = await suggest(client, uri)
    await suggest(client, uri)  # the first counts as dismissed...
    mid = (await command(client, "santa.status"))["acceptance"]["python"]
    assert await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="santa.accepted", arguments=first.command.arguments)) is True
    end = (await command(client, "santa.status"))["acceptance"]["python"]
    assert end["accepted"] == mid["accepted"] + 1 and end["dismissed"] == mid["dismissed"] - 1  # ...until taken
    for bad in ([], ["x"], [10**9], [first.command.arguments[0], "everything"], [True]):
        assert await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="santa.accepted", arguments=bad)) is False
    assert (await command(client, "santa.status"))["acceptance"]["python"] == end
