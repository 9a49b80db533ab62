"""User-facing options: each declared once, as a field of `Options` with its `Spec`.

The same `Options` reach the pipeline from the CLI flags, from LSP initializationOptions and
from workspace/didChangeConfiguration. Keys on the wire are camelCase (`maxNewTokens`);
`Options.from_dict` accepts those, reports every bad key or value, and keeps the default
for each one it rejects, so a typo never takes the server down.

Each field's `Spec` (type from the annotation, choices or bounds, "needs a reload", CLI flag,
one-line doc) is the only place an option is described: the value checks, the reload set
(`lsp/settings.py`), the command-line flags (`add_option_arguments`) and the README's table
(`python -m santa_lsp.config`, checked by tests/unit/test_options.py) derive from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from types import NoneType
from typing import Any, Callable, Iterable, Mapping

from santa_lsp.errors import SantaError

DEFAULT_MODEL = "bigcode/santacoder"
BUNDLED_MODEL = "bundled"

MODES = ("auto", "single-line", "multi-line")
FIM_ORDERS = ("spm", "psm")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16", "int8", "int4")
AUTO_LATENCY_MS = 1000  # maxLatencyMs -1 on CPU
# contextBudget 0 for a big model (SantaCoder) on this machine's CPU: a prompt the cache cannot
# reuse (a new file, the cursor moved elsewhere) prefills at ~150-200 tokens/s on 2 cores, so a
# 1,024-token prompt costs ~5-7 s where the full 1,984 would cost ~10-13 s (benchmarks/NOTES.md).
AUTO_CPU_BUDGET = 1024

_SPEC = "santa"  # the metadata key of a field's Spec


@dataclass(frozen=True)
class Spec:
    """How one option is checked, offered on the command line and documented."""

    doc: str  # one line, Markdown (backticks); the CLI help shows it without them
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None  # inclusive
    reload: bool = False  # a change needs a new engine: the model is loaded again (or reconnected)
    flag: str = ""  # "": --kebab-name (--no-kebab-name for a boolean that is on by default)
    check: Callable[[Any], str | None] | None = None  # for strings with a shape of their own


def option(doc: str, *, choices: tuple[str, ...] = (), bounds: tuple[float, float] | None = None,
           reload: bool = False, flag: str = "", check: Callable[[Any], str | None] | None = None) -> dict[str, Spec]:
    """Field metadata declaring an option: `field(default=..., metadata=option(...))`."""
    return {_SPEC: Spec(doc, choices, bounds, reload, flag, check)}


def _non_empty_string(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "expected a non-empty string"


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


@dataclass
class Options:
    """Every option a user can set. Field names are snake_case; the wire uses camelCase."""

    enable: bool = field(default=True, metadata=option(
        "`false` answers nothing (the model stays loaded if it was)"))
    model: str = field(default=DEFAULT_MODEL, metadata=option(
        "hub id, local checkpoint directory, `bundled` or `synthetic:<preset>`; with `endpoint`, the served "
        "model name", reload=True, check=_non_empty_string))
    endpoint: str = field(default="", metadata=option(
        "base URL of an OpenAI-compatible server (vLLM...) to complete through instead of in-process, e.g. "
        "`http://gpu-box:8000/v1`; API key: `SANTA_API_KEY`, else `OPENAI_API_KEY`",
        reload=True, check=_endpoint_error))
    revision: str | None = field(default=None, metadata=option(
        "hub branch, tag or commit (hub ids only)", reload=True))
    device: str = field(default="auto", metadata=option(
        "where the model runs; `auto`: CUDA when there is one", choices=DEVICES, reload=True))
    dtype: str = field(default="auto", metadata=option(
        "`auto`: float16 on CUDA; on the CPU float32 (exact) for models under 300M parameters and `int4` "
        "(`int8` where the native int4 kernel cannot be built) for bigger ones, such as SantaCoder; "
        "`bfloat16`, `int8` (8-bit weights) and `int4` (4-bit weights) are faster, lossy CPU paths",
        choices=DTYPES, reload=True))
    max_new_tokens: int = field(default=64, metadata=option(
        "longest suggestion, in tokens", bounds=(1, 1024)))
    mode: str = field(default="auto", metadata=option(
        "`auto`: a block after an opener (`:`, `{`), else the rest of the line; or always one shape",
        choices=MODES))
    # SPM keeps the KV cache valid while typing (see DESIGN.md section 3).
    fim_order: str = field(default="spm", metadata=option(
        "prompt order: `spm` keeps the KV cache valid while typing; `psm` is the classic one", choices=FIM_ORDERS))
    context_budget: int = field(default=0, metadata=option(
        "prompt tokens (before + after the cursor); 0: automatic (the model's context minus `maxNewTokens`; "
        "at most 1024 for a model of 300M+ parameters on this machine's CPU, whose cold prompts take seconds)",
        bounds=(0, 1 << 20)))
    suffix_share: float = field(default=0.25, metadata=option(
        "share of the prompt budget kept for the text after the cursor when both sides are long",
        bounds=(0.0, 0.9)))
    token_healing: bool = field(default=True, metadata=option(
        "back up over the partial word at the cursor and let the model re-type it (`pri|` continues like "
        "`print`)", flag="--no-heal"))
    # Cancelled by any real request, so it only spends idle time.
    prefetch: bool = field(default=False, metadata=option(
        "after a suggestion, compute the next one (for when it is accepted) in the background; costs a "
        "second inference per suggestion"))
    temperature: float = field(default=0.0, metadata=option("sampling temperature; 0 is greedy", bounds=(0.0, 5.0)))
    top_p: float = field(default=1.0, metadata=option(
        "nucleus sampling, when `temperature` is above 0", bounds=(0.01, 1.0)))
    debounce_ms: int = field(default=0, metadata=option(
        "server-side wait before inference, in ms (newer keystrokes cancel older requests anyway; not for "
        "explicitly invoked requests)", bounds=(0, 10_000)))
    cache_slots: int = field(default=4, metadata=option(
        "documents whose KV cache is kept (the least recently used one goes first)", bounds=(1, 64), reload=True))
    threads: int = field(default=0, metadata=option(
        "CPU threads for inference; 0: automatic (1 thread for models under 50M parameters, else torch's "
        "default: one per core)", bounds=(0, 256), reload=True))
    max_latency_ms: int = field(default=-1, metadata=option(
        "time limit per suggestion in ms: past it, decoding stops at the next line break and the complete "
        "lines are shown; -1: automatic (1000 on the CPU, off on CUDA and with `endpoint`); 0: off",
        bounds=(-1, 600_000)))

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
        for key, value in raw.items():
            declared = OPTIONS.get(_snake(str(key)))
            if declared is None:
                errors.append(f"unknown option '{key}'")
                continue
            err = declared.check(value)
            if err:
                errors.append(f"option '{key}': {err}; using {getattr(opts, declared.name)!r}")
                continue
            setattr(opts, declared.name, declared.coerce(value))
        return opts, errors

    def to_dict(self) -> dict[str, Any]:
        """The options as the wire has them (camelCase keys): what `from_dict` reads back."""
        return {declared.key: getattr(self, name) for name, declared in OPTIONS.items()}

    def latency_limit_ms(self, local_cpu: bool) -> int:
        """The time limit per request in ms (0: none): `max_latency_ms`, with -1 resolved to
        AUTO_LATENCY_MS for a model running on this machine's CPU and to none otherwise."""
        if self.max_latency_ms < 0:
            return AUTO_LATENCY_MS if local_cpu else 0
        return self.max_latency_ms

    def effective_budget(self, n_positions: int, slow_cpu: bool = False) -> int:
        """Prompt tokens: `context_budget`, with 0 resolved to the model's room, capped at
        AUTO_CPU_BUDGET when `slow_cpu` (an interactive big model on this machine's CPU)."""
        room = n_positions - self.max_new_tokens
        if self.context_budget > 0:
            return min(self.context_budget, room)
        return min(room, AUTO_CPU_BUDGET) if slow_cpu else room


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def camel(name: str) -> str:
    """snake_case -> the wire's camelCase (`max_new_tokens` -> `maxNewTokens`)."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


@dataclass(frozen=True)
class Declared:
    """One option as `Options` declares it: its field, its type and its Spec."""

    name: str  # snake_case, the field
    kind: type  # bool, int, float or str
    nullable: bool  # None is a value (`revision`)
    default: Any
    spec: Spec

    @property
    def key(self) -> str:
        """The camelCase key on the wire."""
        return camel(self.name)

    @property
    def flag(self) -> str:
        if self.spec.flag:
            return self.spec.flag
        kebab = self.name.replace("_", "-")
        return f"--no-{kebab}" if self.kind is bool and self.default else f"--{kebab}"

    def check(self, value: Any) -> str | None:
        """Why `value` is refused, or None."""
        if self.spec.check is not None:
            return self.spec.check(value)
        if self.nullable and value is None:
            return None
        if self.kind is bool:
            return None if isinstance(value, bool) else f"expected true/false, got {value!r}"
        if self.spec.bounds is not None:
            lo, hi = self.spec.bounds
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"expected a number, got {value!r}"
            if self.kind is int and isinstance(value, float) and not value.is_integer():
                return f"expected an integer, got {value!r}"
            return None if lo <= value <= hi else f"{value!r} is outside [{lo}, {hi}]"
        if self.spec.choices:
            allowed = self.spec.choices
            return None if value in allowed else f"expected one of {', '.join(allowed)}, got {value!r}"
        return None if isinstance(value, str) else "expected a string"

    def coerce(self, value: Any) -> Any:
        """An accepted value as the field's type (JSON's 2 for a float, 32.0 for an integer)."""
        return self.kind(value) if self.kind in (int, float) and value is not None else value


def _declare(f: dataclasses.Field, hint: Any) -> Declared:
    args = typing.get_args(hint)
    kind = next(a for a in args if a is not NoneType) if args else hint
    return Declared(f.name, kind, NoneType in args, f.default, f.metadata[_SPEC])


_HINTS = typing.get_type_hints(Options)
OPTIONS: dict[str, Declared] = {f.name: _declare(f, _HINTS[f.name]) for f in dataclasses.fields(Options)}


# -- the command line -----------------------------------------------------------------------------
_ARGS = "santa_options"  # namespace attribute: the options a parser offers as flags


def add_option_arguments(parser: argparse.ArgumentParser, names: Iterable[str],
                         defaults: Mapping[str, Any] | None = None) -> None:
    """Offer these options as flags (`--max-new-tokens`, `--no-heal`...), checked as they are
    parsed; `options_from_args` reads them back. `defaults` replaces an option's default for
    this command only (eval generates longer suggestions)."""
    names = tuple(names)
    for name in names:
        declared = OPTIONS[name]
        default = (defaults or {}).get(name, declared.default)
        text = _plain(declared.spec.doc)
        if declared.kind is bool:
            parser.add_argument(declared.flag, dest=name, default=default,
                                action="store_false" if declared.default else "store_true",
                                help=f"turn off: {text}" if declared.default else text)
        else:
            parser.add_argument(declared.flag, dest=name, default=default, type=_parse_as(declared),
                                choices=declared.spec.choices or None,
                                metavar="N" if declared.kind in (int, float) else None,
                                help=f"{text} (default: %(default)s)" if default not in (None, "") else text)
    parser.set_defaults(**{_ARGS: (*(parser.get_default(_ARGS) or ()), *names)})


def options_from_args(args: argparse.Namespace, base: Options | None = None) -> Options:
    """The options the flags of `add_option_arguments` set, over `base` (default: the defaults)."""
    names = getattr(args, _ARGS, ())
    opts, errors = Options.from_dict({name: getattr(args, name) for name in names}, base)
    if errors:  # flags are checked as they are parsed: only a bad `defaults` entry gets here
        raise SantaError("; ".join(errors))
    return opts


def _parse_as(declared: Declared) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = declared.kind(text) if declared.kind in (int, float) else text
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if declared.kind is int else 'a number'}, got {text!r}") from None
        err = None if declared.spec.choices else declared.check(value)  # argparse names the choices itself
        if err:
            raise argparse.ArgumentTypeError(err)
        return value

    return parse


def _plain(doc: str) -> str:
    """A doc line as --help prints it: no Markdown backticks, and % escaped for argparse."""
    return doc.replace("`", "").replace("%", "%%")


# -- the documentation ----------------------------------------------------------------------------
def _literal(value: Any, kind: type) -> str:
    if isinstance(value, str) and value:
        return value
    if kind is float:
        return f"{value:g}"
    return json.dumps(value)


def _values(declared: Declared) -> str:
    if declared.spec.choices:
        return ", ".join(f"`{c}`" for c in declared.spec.choices)
    if declared.spec.bounds is not None:
        lo, hi = (_literal(x, declared.kind) for x in declared.spec.bounds)
        return f"{lo} to {hi}"
    if declared.kind is bool:
        return "`true`, `false`"
    return "text or `null`" if declared.nullable else "text"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bar would end the cell, even inside backticks


def markdown_table() -> str:
    """The README's table of options (between its `<!-- options -->` markers)."""
    rows = ["| option | default | values | reload | meaning |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{d.key}` | `{_literal(d.default, d.kind)}` | {_values(d)} | {'yes' if d.spec.reload else ''} "
             f"| {_cell(d.spec.doc)} |" for d in OPTIONS.values()]
    return "\n".join(rows)


def declarations() -> dict[str, dict[str, Any]]:
    """Every option by its wire key, as JSON: what editor plugins and their tests compare with."""
    return {d.key: {"default": d.default, "choices": list(d.spec.choices),
                    "bounds": list(d.spec.bounds) if d.spec.bounds else None,
                    "reload": d.spec.reload, "doc": d.spec.doc} for d in OPTIONS.values()}


if __name__ == "__main__":  # python -m santa_lsp.config [--json]: regenerate the README table
    import sys

    print(json.dumps(declarations(), indent=1) if sys.argv[1:] == ["--json"] else markdown_table())
