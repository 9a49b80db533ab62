"""initializationOptions and workspace/didChangeConfiguration: validation, enable, debounce."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsp_helpers import URI, command, open_doc
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")

TEXT = "".join(f"w{i} = print(\n" for i in range(6))


def configure(client, settings) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))


async def settle(client, predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_invalid_initialization_options_named_then_defaults(plain_client):
    (warning,) = [m for m in plain_client.messages if m.type == types.MessageType.Warning]
    assert "maxNewTokens" in warning.message and "bogusOption" in warning.message
    assert (await command(plain_client, "santa.status"))["state"] == "ready"  # the model option was fine


async def test_invalid_setting_reported_and_ignored(plain_client):
    before = len(plain_client.messages)
    configure(plain_client, {"santa": {"temperature": "hot", "fimOrder": "sideways"}})
    await settle(plain_client, lambda: len(plain_client.messages) > before)
    (message,) = plain_client.messages[before:]
    assert "temperature" in message.message and "fimOrder" in message.message
    assert "maxNewTokens" not in message.message  # initializationOptions were judged once
    assert (await command(plain_client, "santa.status"))["state"] == "ready"
    configure(plain_client, {})


async def test_enable_false_then_true(plain_client):
    uri = URI.replace("example", "toggle")
    open_doc(plain_client, TEXT, uri)
    loads = (await command(plain_client, "santa.status"))["loadSeconds"]
    configure(plain_client, {"enable": False})
    await settle(plain_client, lambda: plain_client.statuses[-1].state == "disabled")
    result = await plain_client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(0, 11)))
    assert not result.items
    configure(plain_client, {"santa": {"enable": True}})
    await settle(plain_client, lambda: plain_client.statuses[-1].state == "ready")
    status = await command(plain_client, "santa.status")
    assert status["loadSeconds"] == loads  # the same model, not loaded again


async def test_debounce_runs_only_the_last_of_a_burst(plain_client):
    uri = URI.replace("example", "debounce")
    open_doc(plain_client, TEXT, uri)
    configure(plain_client, {"debounceMs": 300})
    await asyncio.sleep(0.1)
    before = (await command(plain_client, "santa.status"))["stats"]
    t0 = time.monotonic()
    burst = []
    for line in range(1, 4):
        burst.append(asyncio.ensure_future(plain_client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, 11)))))
        await asyncio.sleep(0.03)
    results = await asyncio.gather(*burst)
    assert time.monotonic() - t0 >= 0.3
    assert [bool(r.items) for r in results] == [False, False, True]
    after = (await command(plain_client, "santa.status"))["stats"]
    assert after["completed"] - before["completed"] == 1 and after["cancelled"] - before["cancelled"] == 2

    configure(plain_client, {"debounceMs": 3000})
    t0 = time.monotonic()  # asked for explicitly: no debounce
    invoked = await plain_client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(4, 11),
        context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked)))
    assert invoked.items and time.monotonic() - t0 < 1.5
    configure(plain_client, {})


async def test_pulls_settings_when_none_are_sent(client):
    client.set_configuration({"enable": False}, section="santa")
    try:
        configure(client, None)  # settings: null -> the server asks for its section
        await settle(client, lambda: client.statuses[-1].state == "disabled")
    finally:
        client.set_configuration({}, section="santa")
        configure(client, None)
    await settle(client, lambda: client.statuses[-1].state == "ready")
