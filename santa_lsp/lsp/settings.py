"""Options from the client: initializationOptions and workspace/didChangeConfiguration.

The effective options are layered: defaults (and `serve --model`), then initializationOptions,
then the latest workspace settings. Each layer may be flat (`{"maxNewTokens": 32}`) or nested
under the section name (`{"santa": {...}}`, what VS Code and most clients send). A bad key or
value is reported and its default kept.
"""

from __future__ import annotations

from typing import Any

from santa_lsp.config import Options

SECTION = "santa"
# Changing one of these needs a new engine: the model is loaded again.
RELOAD_FIELDS = ("model", "revision", "device", "dtype", "cache_slots", "threads")


def section(raw: Any) -> Any:
    """The santa part of a settings object that may hold other tools' sections too."""
    if isinstance(raw, dict) and isinstance(raw.get(SECTION), dict):
        return raw[SECTION]
    return raw


def merge(base: Options, *layers: Any) -> tuple[Options, list[str]]:
    """Apply each layer over `base` in turn; return the options and every complaint."""
    opts, errors = base, []
    for raw in layers:
        opts, errs = Options.from_dict(section(raw), opts)
        errors += errs
    return opts, errors


def needs_reload(loaded: Options | None, wanted: Options) -> bool:
    return loaded is None or any(getattr(loaded, f) != getattr(wanted, f) for f in RELOAD_FIELDS)


def error_message(errors: list[str]) -> str:
    return "santa-lsp: invalid settings, defaults used instead: " + "; ".join(errors)
