"""Changing the endpoint option at run time reconnects (it is a reload field), and santa.status
reports the remote engine's own status."""

from __future__ import annotations

import socket

import pytest
from lsp_helpers import close_session, command, open_session, wait_state
from lsprotocol import types


def closed_port() -> int:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_device(client, prefix: str, timeout: float = 30) -> dict:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = await wait_state(client, ("ready", "error"), timeout)
        if status["device"].startswith(prefix) or status["state"] == "error":
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


@pytest.mark.asyncio(loop_scope="session")
async def test_endpoint_change_reconnects(tiny_model_dir):
    client = await open_session({"model": str(tiny_model_dir)})
    try:
        status = await wait_state(client)
        assert status["device"] == "cpu" and "remote" not in status
        port = closed_port()
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"santa": {"model": str(tiny_model_dir), "endpoint": f"http://127.0.0.1:{port}/v1"}}))
        status = await wait_device(client, "remote")
        assert status["state"] == "ready" and status["device"] == f"remote 127.0.0.1:{port}", status
        assert isinstance(status["remote"], dict) and status["remote"]  # the RemoteEngine's status()
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"santa": {"model": str(tiny_model_dir), "endpoint": ""}}))
        status = await wait_device(client, "cpu")
        assert status["device"] == "cpu" and "remote" not in status
        assert [s.state for s in client.statuses].count("loading") == 3
    finally:
        await close_session(client)
