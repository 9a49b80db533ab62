"""initialize: capabilities, position encoding, commands; the start-up status notifications."""

from __future__ import annotations

import pytest
from lsprotocol import types

from lsp_helpers import wait_state

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_advertises_inline_completion_and_not_completion(client):
    caps = client.init_result.capabilities
    assert isinstance(caps.inline_completion_provider, types.InlineCompletionOptions)
    assert caps.completion_provider is None  # the client shows inline completions: no duplicate
    assert caps.position_encoding == types.PositionEncodingKind.Utf16
    sync = caps.text_document_sync
    assert sync.change == types.TextDocumentSyncKind.Incremental and sync.open_close
    assert {"santa.status", "santa.reload"} <= set(caps.execute_command_provider.commands)
    assert client.init_result.server_info.name == "santa-lsp"


async def test_status_notifications_and_progress(client):
    states = [s.state for s in client.statuses]
    assert states[0] == "loading" and states[-1] == "ready"
    assert client.statuses[-1].model and client.statuses[-1].device in ("cpu", "cuda")
    (reports,) = client.progress_reports.values()
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)


async def test_status_command(client):
    status = await wait_state(client)
    assert status["requestedModel"] == status["model"]
    assert status["dtype"] in ("float32", "float16") and status["loadSeconds"] >= 0
    assert set(status["stats"]) >= {"requests", "cancelled", "reusedTokens", "computedTokens", "latencyMs"}
    assert set(status["stats"]["latencyMs"]) == {"p50", "p95", "p99"}


async def test_no_progress_without_client_support(plain_client):
    await wait_state(plain_client)
    assert plain_client.progress_reports == {}
