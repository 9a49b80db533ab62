"""Fixtures for the reliability tests: real servers over stdio, driven by `benchmarks.lsp_client.RawClient`."""

from __future__ import annotations

import pytest
from reliability_helpers import start_server, write_figures


def pytest_sessionfinish(session, exitstatus):
    write_figures()


@pytest.fixture(scope="session")
def shared_server(tiny_model_dir, tmp_path_factory):
    """One tiny-model server that the fuzz, document and fault tests all keep using: whatever
    they send it, it must go on answering."""
    client = start_server(tiny_model_dir, tmp_path_factory.mktemp("shared-server") / "stderr.log")
    yield client
    try:
        assert client.proc.poll() is None, "the shared server died"
        assert client.shutdown() == 0
    finally:
        client.close()
