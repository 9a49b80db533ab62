"""Model lifecycle: requests while loading, a model that fails to load, the offline fallback,
reload on a model change, download progress."""

from __future__ import annotations

import time

import pytest
from lsp_helpers import PROMPT, close_session, command, inline_params, open_doc, open_session, wait_state
from lsprotocol import types

from santa_lsp.engine.hub import BUNDLED_DIR
from santa_lsp.lsp.loading import progress_tqdm

# The bundled model is trained separately; without it the fallback is an error instead.
BUNDLED_PRESENT = (BUNDLED_DIR / "config.json").is_file()


@pytest.mark.asyncio(loop_scope="session")
async def test_failure_then_recovery(tiny_santacoder_dir, tmp_path):
    missing = tmp_path / "no-such-model"
    client = await open_session({"model": str(missing)})
    try:
        open_doc(client, PROMPT)
        cursor = (PROMPT.count("\n"), len("print("))
        # A request made while the model loads waits for the load, which fails: no suggestion.
        early = await client.text_document_inline_completion_async(inline_params(*cursor))
        assert not early.items

        status = await wait_state(client, ("error",))
        assert str(missing) in status["message"]
        (error,) = [m for m in client.messages if m.type == types.MessageType.Error]
        assert "cannot load model" in error.message and str(missing) in error.message
        assert not (await client.text_document_inline_completion_async(inline_params(*cursor))).items

        # A hub model that is not cached, offline: the bundled model stands in, with a warning.
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"model": "santa-lsp-tests/not-cached"}))
        status = await wait_state(client, ("ready", "error"))
        if BUNDLED_PRESENT:
            assert status["model"] == "bundled" and status["requestedModel"] == "santa-lsp-tests/not-cached"
            (warning,) = [m for m in client.messages if m.type == types.MessageType.Warning]
            assert "santa-lsp download" in warning.message and warning.message.endswith(status["message"])

        # A model change loads again; the original santacoder checkpoint layout works too.
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"santa": {"model": str(tiny_santacoder_dir)}}))
        status = await wait_state(client)
        assert status["model"] == str(tiny_santacoder_dir) and status["message"] == ""
        assert (await client.text_document_inline_completion_async(inline_params(*cursor))).items

        reloaded = await command(client, "santa.reload")
        assert reloaded["state"] == "loading"
        assert (await wait_state(client))["model"] == str(tiny_santacoder_dir)
        fallback = "ready" if BUNDLED_PRESENT else "error"
        assert [s.state for s in client.statuses] == ["loading", "error", "loading", fallback, "loading", "ready",
                                                      "loading", "ready"]
    finally:
        await close_session(client)


def test_download_progress_reports():
    reports = []
    bar = progress_tqdm(lambda message, pct: reports.append((message, pct)))(
        total=2_000_000, desc="Downloading bytes", unit="B")
    for _ in range(4):
        bar.update(500_000)
    bar.close()
    assert reports[0][1] == 25 and reports[-1] == ("Downloading bytes: 2 / 2 MB", 100)
