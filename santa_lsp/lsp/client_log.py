"""Forward santa_lsp log records to the client as window/logMessage (stderr gets them too)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from lsprotocol import types

MAX_CHARS = 4000  # of one forwarded record: a log line can quote a megabyte input
_TYPES = ((logging.ERROR, types.MessageType.Error), (logging.WARNING, types.MessageType.Warning),
          (logging.INFO, types.MessageType.Info))


class ClientLogHandler(logging.Handler):
    def __init__(self, send: Callable[[types.MessageType, str], None], level: int = logging.INFO) -> None:
        super().__init__(level)
        self._send = send
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kind = next((t for lvl, t in _TYPES if record.levelno >= lvl), types.MessageType.Log)
            text = self.format(record)
            if len(text) > MAX_CHARS:
                text = f"{text[:MAX_CHARS]}... ({len(text)} characters)"
            self._send(kind, text)
        except Exception:
            self.handleError(record)
