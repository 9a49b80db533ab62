"""Options from the client: initializationOptions and workspace/didChangeConfiguration.

The effective options are layered: defaults (and `serve --model`), then initializationOptions,
then the latest workspace settings. Each layer may be flat (`{"maxNewTokens": 32}`) or nested
under the section name (`{"santa": {...}}`, what VS Code and most clients send). A bad key or
value is reported and its default kept. A string longer than MAX_STRING characters (a 10 MB
model name) is refused before it reaches the options: it would be repeated into every
status notification and message.
"""

from __future__ import annotations

from typing import Any

from santa_lsp.config import OPTIONS, Options

SECTION = "santa"
# Changing one of these needs a new engine: the model is loaded again (declared in config.py).
RELOAD_FIELDS = tuple(name for name, declared in OPTIONS.items() if declared.spec.reload)
MAX_STRING = 4096  # characters of any string option (model names and paths included)
MAX_ERROR = 300  # characters of one complaint in a message


def _clip(text: str, limit: int = MAX_ERROR) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _refuse_long_strings(raw: Any) -> tuple[Any, list[str]]:
    """`raw` without its over-long string values, and a complaint for each."""
    if not isinstance(raw, dict):
        return raw, []
    errors = [f"{_clip(str(key), 60)}: {len(value):,} characters is too long (at most {MAX_STRING})"
              for key, value in raw.items() if isinstance(value, str) and len(value) > MAX_STRING]
    if not errors:
        return raw, []
    return {k: v for k, v in raw.items() if not (isinstance(v, str) and len(v) > MAX_STRING)}, errors


def section(raw: Any) -> Any:
    """The santa part of a settings object that may hold other tools' sections too."""
    if isinstance(raw, dict) and isinstance(raw.get(SECTION), dict):
        return raw[SECTION]
    return raw


def merge(base: Options, *layers: Any) -> tuple[Options, list[str]]:
    """Apply each layer over `base` in turn; return the options and every complaint."""
    opts, errors = base, []
    for raw in layers:
        raw, refused = _refuse_long_strings(section(raw))
        opts, errs = Options.from_dict(raw, opts)
        errors += refused + [_clip(e) for e in errs]
    return opts, errors


def needs_reload(loaded: Options | None, wanted: Options) -> bool:
    return loaded is None or any(getattr(loaded, f) != getattr(wanted, f) for f in RELOAD_FIELDS)


def error_message(errors: list[str]) -> str:
    text = "santa-lsp: invalid settings, defaults used instead: " + "; ".join(errors)
    return _clip(text, 2000)
