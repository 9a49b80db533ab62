"""Shared helpers of the reliability tests (a module of its own: several conftest.py exist).

Sizes scale with environment variables, small by default so that CI stays within its time:
SANTA_FUZZ_EXAMPLES (hypothesis examples per fuzz test), SANTA_STORM_PAIRS (keystrokes of the
storm test). SANTA_RELIABILITY_REPORT names a JSON file that receives the measured figures.
RELIABILITY.md gives the full-run commands.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from benchmarks.lsp_client import RawClient

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


# Python code that installs an audit hook recording (to $SANTA_AUDIT_LOG) and blocking every
# socket use that is not AF_UNIX or loopback; santa-lsp then runs behind it.
AUDIT_PRELUDE = textwrap.dedent("""
    import os, socket, sys
    LOG = open(os.environ["SANTA_AUDIT_LOG"], "a", buffering=1)
    LOOPBACK = ("127.", "::1", "localhost")

    def hook(event, args):
        if not event.startswith(("socket.", "http.", "urllib.")):
            return
        if event == "socket.__new__":
            family = args[1]
            if family in (socket.AF_UNIX, -1):
                return
        elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            address = args[1]
            if isinstance(address, (str, bytes)) or (isinstance(address, tuple) and str(address[0]).startswith(LOOPBACK)):
                return
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
            if str(args[0]).startswith(LOOPBACK):
                return
        LOG.write(f"{event} {args!r}\\n")
        raise PermissionError(f"network use blocked by the test: {event}")  # and nothing leaves

    sys.addaudithook(hook)
""")


def audited_command(*args: str) -> list[str]:
    """`santa-lsp ARGS...` under the audit hook (set SANTA_AUDIT_LOG in its environment)."""
    return [sys.executable, "-c", AUDIT_PRELUDE + "from santa_lsp.cli import main\nsys.exit(main(sys.argv[1:]))\n", *args]


def audit_log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []
