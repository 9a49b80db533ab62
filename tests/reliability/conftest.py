"""Fixtures for the reliability tests: real servers over stdio, driven by `santa_lsp.storm.RawClient`.

Sizes scale with environment variables, small by default so that CI stays within its time:
SANTA_FUZZ_EXAMPLES (hypothesis examples per fuzz test), SANTA_STORM_PAIRS (keystrokes of the
storm test). RELIABILITY.md gives the full-run commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from santa_lsp.storm import RawClient

FUZZ_EXAMPLES = int(os.environ.get("SANTA_FUZZ_EXAMPLES", "60"))
STORM_PAIRS = int(os.environ.get("SANTA_STORM_PAIRS", "400"))


REPORT_PATH = os.environ.get("SANTA_RELIABILITY_REPORT")  # figures for RELIABILITY.md, when set
_figures: dict[str, object] = {}


def record(name: str, value: object) -> None:
    """Keep a measured figure; written to $SANTA_RELIABILITY_REPORT (JSON) at the end of the session."""
    _figures[name] = value


def pytest_sessionfinish(session, exitstatus):
    if REPORT_PATH and _figures:
        Path(REPORT_PATH).write_text(json.dumps(_figures, indent=1, sort_keys=True, default=str) + "\n")


def start_server(model_dir: Path | str, log: Path, **options) -> RawClient:
    client = RawClient(stderr_path=log)
    client.initialize({"model": str(model_dir), "maxNewTokens": 8, **options})
    client.wait_ready(timeout=90)
    return client


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
