"""Fixtures for the end-to-end LSP tests.

Servers are expensive to start (torch takes seconds to import on a small machine), so the
configurations most tests need are started once per session, all at the same time (`client`,
`plain_client`, `slow_client`); tests that need another configuration start their own with
`lsp_helpers.open_session`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
from lsp_helpers import capabilities, close_session, make_slow_model, open_session, wait_state


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    path = make_slow_model(tmp_path_factory.mktemp("slow-model"))
    (path / "tokenizer.json").write_bytes(tiny_tokenizer.read_bytes())
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_sessions(tiny_model_dir, slow_model_dir):
    """The shared servers, by name; they load their models in parallel."""
    sessions = dict(zip(("client", "plain_client", "slow_client"), await asyncio.gather(
        # A client with inline completion, UTF-16 positions and workspace/configuration.
        open_session({"model": str(tiny_model_dir), "maxNewTokens": 8}, capabilities(pull_configuration=True)),
        # A client without inline completion (gets textDocument/completion instead) or progress
        # support, offering UTF-8 positions, whose initializationOptions hold two mistakes.
        open_session({"santa": {"model": str(tiny_model_dir), "maxNewTokens": "many", "bogusOption": 1}},
                     capabilities(inline=False, encodings=["utf-8", "utf-16"], progress=False)),
        # The slow model, asked for long suggestions: each takes about a second. It writes one
        # line of 300 `(` (a block cut by the token limit would drop its unfinished line).
        open_session({"model": str(slow_model_dir), "maxNewTokens": 300, "mode": "single-line"}),
    )))
    try:
        await asyncio.gather(*(wait_state(s) for s in sessions.values()))
        yield sessions
    finally:
        await asyncio.gather(*(close_session(s) for s in sessions.values()))


@pytest.fixture
def client(shared_sessions):
    return shared_sessions["client"]


@pytest.fixture
def plain_client(shared_sessions):
    return shared_sessions["plain_client"]


@pytest.fixture
def slow_client(shared_sessions):
    return shared_sessions["slow_client"]
