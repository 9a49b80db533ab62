"""Process lifecycle: shutdown/exit, exit when stdin closes or the client process dies, TCP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
from lsp_helpers import capabilities, command, open_session, server_env
from lsprotocol import types
from pygls.lsp.client import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Disabled: no model is loaded (not even torch imported), so these servers start in a blink.
DISABLED = {"enable": False}


async def exits_within(client, seconds: float) -> int:
    return await asyncio.wait_for(client._server.wait(), timeout=seconds)


async def test_shutdown_then_exit():
    client = await open_session(DISABLED)
    assert (await command(client, "santa.status"))["state"] == "disabled"
    await client.shutdown_async(None)
    client.exit(None)
    assert await exits_within(client, 2) == 0
    await client.stop()


async def test_exit_when_stdin_closes():
    client = await open_session(DISABLED)
    client._server.stdin.close()
    assert await exits_within(client, 2) == 1  # no shutdown request came first
    await client.stop()


async def test_exit_when_the_client_process_dies():
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    client = await open_session(DISABLED, process_id=parent.pid)
    try:
        await command(client, "santa.status")
        parent.kill()
        parent.wait()
        await exits_within(client, 2.5)  # polled every second
    finally:
        if client._server.returncode is None:
            client._server.kill()
        await client.stop()


async def test_tcp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "santa_lsp", "serve", "--tcp", "--port", str(port), env=server_env())
    client = LanguageClient("tcp-test", "1")
    try:
        for _ in range(100):
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        result = await client.initialize_async(types.InitializeParams(
            capabilities=capabilities(), initialization_options=DISABLED))
        assert result.capabilities.inline_completion_provider is not None
        await client.shutdown_async(None)
        client.exit(None)
        assert await asyncio.wait_for(server.wait(), timeout=2) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        await client.stop()
