"""User-facing options, as dataclasses with documented defaults.

The same `Options` reach the pipeline from the CLI flags, from LSP initializationOptions and
from workspace/didChangeConfiguration. Keys on the wire are camelCase (`maxNewTokens`);
`Options.from_dict` accepts those, reports every bad key or value, and keeps the default
for each one it rejects, so a typo never takes the server down.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_MODEL = "bigcode/santacoder"
BUNDLED_MODEL = "bundled"

MODES = ("auto", "single-line", "multi-line")
FIM_ORDERS = ("spm", "psm")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16", "int8", "int4")
AUTO_LATENCY_MS = 1000  # maxLatencyMs -1 on CPU


@dataclass
class Options:
    """Every option a user can set. Field names are snake_case; the wire uses camelCase."""

    enable: bool = True
    # Hub id (`bigcode/santacoder`), a local directory, `bundled`, or `synthetic:<preset>`.
    model: str = DEFAULT_MODEL
    # Base URL of an OpenAI-compatible server (`http://gpu-box:8000/v1`, vLLM first): complete
    # there instead of in-process; `model` is then the served model name. Empty: in-process.
    endpoint: str = ""
    # Hub revision (branch, tag or commit) for hub ids; ignored for local paths.
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_new_tokens: int = 64
    # auto: single line inside a line, a block after an opener; or force one shape.
    mode: str = "auto"
    # SPM keeps the KV cache valid while typing (see DESIGN.md section 3).
    fim_order: str = "spm"
    # Prompt budget in tokens (prefix + suffix); 0 means n_positions - max_new_tokens.
    context_budget: int = 0
    # Share of the budget kept for the suffix when both sides are long.
    suffix_share: float = 0.25
    # Token healing: back the prompt up over the partial word at the cursor and have the
    # model re-generate it under a constraint (`pri|` continues like `print`).
    token_healing: bool = True
    # After a suggestion, compute the next one (for when it is accepted) in the background,
    # cancelled by any real request. Costs a second inference per suggestion.
    prefetch: bool = False
    temperature: float = 0.0
    top_p: float = 1.0
    # Server-side wait before starting inference; newer keystrokes cancel older ones anyway.
    debounce_ms: int = 0
    # Number of documents whose KV cache is kept (LRU).
    cache_slots: int = 4
    # CPU threads for inference; 0: automatic (1 thread for models under 50M parameters, else
    # torch's default: one per core).
    threads: int = 0
    # Time limit per request in milliseconds: past it, decoding stops at the next line break and
    # the complete lines are shown. -1: automatic (1000 on CPU, off on CUDA and for an
    # endpoint); 0: off.
    max_latency_ms: int = -1

    @classmethod
    def from_dict(cls, raw: Any, base: "Options | None" = None) -> tuple["Options", list[str]]:
        """Merge `raw` (camelCase or snake_case keys) over `base`; return (options, errors)."""
        opts = dataclasses.replace(base) if base is not None else cls()
        errors: list[str] = []
        if raw is None:
            return opts, errors
        if not isinstance(raw, dict):
            return opts, [f"options must be an object, got {type(raw).__name__}"]
        # Clients often nest their settings under the extension's section name.
        if set(raw) == {"santa"} and isinstance(raw["santa"], dict):
            raw = raw["santa"]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in raw.items():
            name = _snake(str(key))
            if name not in fields:
                errors.append(f"unknown option '{key}'")
                continue
            err = _check(name, value)
            if err:
                errors.append(f"option '{key}': {err}; using {getattr(opts, name)!r}")
                continue
            if isinstance(getattr(opts, name), float) and isinstance(value, int):
                value = float(value)
            setattr(opts, name, value)
        return opts, errors

    def latency_limit_ms(self, local_cpu: bool) -> int:
        """The time limit per request in ms (0: none): `max_latency_ms`, with -1 resolved to
        AUTO_LATENCY_MS for a model running on this machine's CPU and to none otherwise."""
        if self.max_latency_ms < 0:
            return AUTO_LATENCY_MS if local_cpu else 0
        return self.max_latency_ms

    def effective_budget(self, n_positions: int) -> int:
        room = n_positions - self.max_new_tokens
        return room if self.context_budget <= 0 else min(self.context_budget, room)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _check(name: str, value: Any) -> str | None:
    def number(lo: float, hi: float, integer: bool) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {value!r}"
        if integer and not float(value).is_integer():
            return f"expected an integer, got {value!r}"
        if not lo <= value <= hi:
            return f"{value!r} is outside [{lo}, {hi}]"
        return None

    def choice(allowed: tuple[str, ...]) -> str | None:
        return None if value in allowed else f"expected one of {', '.join(allowed)}, got {value!r}"

    checks = {
        "enable": lambda: None if isinstance(value, bool) else f"expected true/false, got {value!r}",
        "model": lambda: None if isinstance(value, str) and value.strip() else "expected a non-empty string",
        "revision": lambda: None if value is None or isinstance(value, str) else "expected a string",
        "endpoint": lambda: _endpoint_error(value),
        "device": lambda: choice(DEVICES),
        "dtype": lambda: choice(DTYPES),
        "max_new_tokens": lambda: number(1, 1024, True),
        "mode": lambda: choice(MODES),
        "fim_order": lambda: choice(FIM_ORDERS),
        "context_budget": lambda: number(0, 1 << 20, True),
        "suffix_share": lambda: number(0.0, 0.9, False),
        "token_healing": lambda: None if isinstance(value, bool) else f"expected true/false, got {value!r}",
        "prefetch": lambda: None if isinstance(value, bool) else f"expected true/false, got {value!r}",
        "temperature": lambda: number(0.0, 5.0, False),
        "top_p": lambda: number(0.01, 1.0, False),
        "debounce_ms": lambda: number(0, 10_000, True),
        "cache_slots": lambda: number(1, 64, True),
        "threads": lambda: number(0, 256, True),
        "max_latency_ms": lambda: number(-1, 600_000, True),
    }
    return checks[name]()


def _endpoint_error(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a URL string, got {value!r}"
    if not value.strip():
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL such as http://127.0.0.1:8000/v1, got {value!r}"
    try:
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        return f"bad port in {value!r}"
    return None
