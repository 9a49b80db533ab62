"""End-to-end helpers: the real server in a subprocess, driven over stdio by pytest-lsp's client."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

from benchmarks.lsp_client import server_env
from santa_lsp.engine.model import GPTBigCode, ModelConfig, init_random
from santa_lsp.engine.weights import save_gpt_bigcode

REPO = Path(__file__).resolve().parents[2]
URI = "file:///tmp/santa-lsp-test/example.py"
# The tiny random models repeat the last prompt token; after "print(" that is "((((...":
# not code, but a non-empty suggestion.
PROMPT = "import os\n\nprint("


def capabilities(inline: bool = True, encodings: list[str] | None = None, progress: bool = True,
                 pull_configuration: bool = False) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=encodings) if encodings else None,
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            completion=types.CompletionClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities() if inline else None,
        ),
        window=types.WindowClientCapabilities(work_done_progress=progress),
        workspace=types.WorkspaceClientCapabilities(configuration=pull_configuration),
    )


async def open_session(init_options: dict[str, Any] | None = None, caps: types.ClientCapabilities | None = None,
                       process_id: int | None = None, env: dict[str, str] | None = None) -> LanguageClient:
    """Start a server and initialize it; `client.statuses` collects its santa/status notifications."""
    client = make_test_lsp_client()
    client.statuses = []

    @client.feature("santa/status")
    def on_status(params: Any) -> None:
        client.statuses.append(params)

    await client.start_io(sys.executable, "-m", "santa_lsp", "serve", env={**server_env(), **(env or {})})
    client.init_result = await client.initialize_session(types.InitializeParams(
        capabilities=caps or capabilities(), initialization_options=init_options, process_id=process_id))
    return client


async def close_session(client: LanguageClient) -> None:
    try:
        await asyncio.wait_for(client.shutdown_session(), timeout=5)
    finally:
        server = client._server
        if server is not None and server.returncode is None:
            server.kill()
        await client.stop()


async def command(client: LanguageClient, name: str) -> Any:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command=name))


async def wait_state(client: LanguageClient, states: tuple[str, ...] = ("ready",), timeout: float = 30) -> dict:
    """Poll santa.status until the server reaches one of `states`."""
    deadline = time.monotonic() + timeout
    while True:
        status = await command(client, "santa.status")
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, f"server stuck in {status}"
        await asyncio.sleep(0.05)


def open_doc(client: LanguageClient, text: str, uri: str = URI, version: int = 1) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))


def inline_params(line: int, character: int, uri: str = URI) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))


def make_slow_model(path: Path) -> Path:
    """Random weights big enough that a few hundred greedy tokens take a second on one CPU thread:
    time enough to type, cancel and change the document while it generates."""
    config = ModelConfig(vocab_size=384, n_positions=2048, n_embd=256, n_layer=4, n_head=4, n_inner=1024)
    model = init_random(GPTBigCode(config), seed=0)
    with torch.no_grad():
        model.wte.weight.mul_(50)  # as make_tiny_model: the output repeats the last token
    save_gpt_bigcode(model.eval(), path)
    return path


