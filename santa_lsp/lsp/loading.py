"""Load the model in a background thread, turning download progress into progress reports.

The thread is a daemon: a server asked to exit never waits for a download to finish.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from santa_lsp.config import Options
from santa_lsp.errors import ModelLoadError, SantaError

if TYPE_CHECKING:
    from santa_lsp.engine import LoadedModel

log = logging.getLogger(__name__)

# report(message, percentage or None)
Report = Callable[[str, "int | None"], None]
REPORT_INTERVAL_S = 0.25
# Tests only: seconds added to every load, to simulate a big model loading slowly.
TEST_LOAD_DELAY_ENV = "SANTA_LSP_TEST_LOAD_DELAY_S"


def progress_tqdm(report: Report) -> type:
    """A tqdm class that draws nothing and forwards its progress to `report` (throttled)."""
    from tqdm import tqdm

    class ProgressReporter(tqdm):
        _last_report = 0.0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["file"] = io.StringIO()  # never the console: stdout is the protocol
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            now = time.monotonic()
            total = self.total or 0
            if total > 0 and (now - ProgressReporter._last_report >= REPORT_INTERVAL_S or self.n >= total):
                ProgressReporter._last_report = now
                pct = int(100 * min(self.n, total) / total)
                if self.unit == "B":
                    text = f"{self.desc or 'downloading'}: {self.n / 1e6:.0f} / {total / 1e6:.0f} MB"
                else:
                    text = f"{self.desc or 'downloading'}: {self.n:.0f} / {total:.0f}"
                report(text, pct)
            return shown

    return ProgressReporter


def load_in_background(
    opts: Options,
    on_done: Callable[[LoadedModel | None, SantaError | None], None],
    on_progress: Report,
    on_warning: Callable[[str], None],
) -> threading.Thread:
    """Start loading `opts.model`; `on_done(loaded, None)` or `on_done(None, error)` follows, from the thread."""

    def work() -> None:
        try:
            delay = float(os.environ.get(TEST_LOAD_DELAY_ENV) or 0)
            if delay > 0:
                time.sleep(delay)
            from santa_lsp.engine import load_engine  # imports torch: seconds, so not on the event loop

            loaded = load_engine(opts, allow_download=True, tqdm_class=progress_tqdm(on_progress),
                                 on_warning=on_warning)
        except SantaError as err:
            on_done(None, err)
        except Exception as err:  # a corrupt file, out of memory...: reported, never fatal
            log.exception("loading %s failed", opts.model)
            on_done(None, ModelLoadError(opts.model, f"{type(err).__name__}: {err}",
                                         "Check the model option (a hub id or a checkpoint directory) and the log."))
        else:
            on_done(loaded, None)

    thread = threading.Thread(target=work, name="santa-model-load", daemon=True)
    thread.start()
    return thread
