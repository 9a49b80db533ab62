"""Shared helpers of the reliability tests (a module of its own: several conftest.py exist).

Sizes scale with environment variables, small by default so that CI stays within its time:
SANTA_FUZZ_EXAMPLES (hypothesis examples per fuzz test), SANTA_STORM_PAIRS (keystrokes of the
storm test). SANTA_RELIABILITY_REPORT names a JSON file that receives the measured figures.
RELIABILITY.md gives the full-run commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from santa_lsp.storm import RawClient

FUZZ_EXAMPLES = int(os.environ.get("SANTA_FUZZ_EXAMPLES", "60"))
STORM_PAIRS = int(os.environ.get("SANTA_STORM_PAIRS", "400"))
REPORT_PATH = os.environ.get("SANTA_RELIABILITY_REPORT")
_figures: dict[str, object] = {}


def record(name: str, value: object) -> None:
    """Keep a measured figure for RELIABILITY.md (written by `write_figures`)."""
    _figures[name] = value


def write_figures() -> None:
    if REPORT_PATH and _figures:
        path = Path(REPORT_PATH)
        old = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**old, **_figures}, indent=1, sort_keys=True, default=str) + "\n")


def start_server(model_dir: Path | str, log: Path, **options) -> RawClient:
    client = RawClient(stderr_path=log)
    client.initialize({"model": str(model_dir), "maxNewTokens": 8, **options})
    client.wait_ready(timeout=90)
    return client
