"""Forward santa_lsp log records to the client as window/logMessage (stderr gets them too)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from lsprotocol import types

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
            self._send(kind, self.format(record))
        except Exception:
            self.handleError(record)
