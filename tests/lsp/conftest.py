"""Fixtures for the end-to-end LSP tests.

Servers are expensive to start (torch takes seconds to import on a small machine), so the
plain configuration is shared by the whole session (`client`); tests that need another
configuration start their own with `lsp_helpers.open_session`.
"""

from __future__ import annotations

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
async def client(tiny_model_dir):
    """A server for a client with inline completion, UTF-16 positions and the tiny model, ready."""
    session = await open_session({"model": str(tiny_model_dir), "maxNewTokens": 8})
    await wait_state(session)
    yield session
    await close_session(session)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def plain_client(tiny_model_dir):
    """A client without inline completion (gets textDocument/completion instead) or progress support,
    offering UTF-8 positions, whose initializationOptions hold two mistakes."""
    caps = capabilities(inline=False, encodings=["utf-8", "utf-16"], progress=False)
    session = await open_session({"santa": {"model": str(tiny_model_dir), "maxNewTokens": "many", "bogusOption": 1}},
                                 caps)
    await wait_state(session)
    yield session
    await close_session(session)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def slow_client(slow_model_dir):
    """The slow model, asked for long multi-line suggestions: each takes about a second."""
    session = await open_session({"model": str(slow_model_dir), "maxNewTokens": 300, "mode": "multi-line"})
    await wait_state(session)
    yield session
    await close_session(session)
