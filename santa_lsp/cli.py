"""Command line: serve (stdio | tcp), complete, eval, download.

Errors the user can act on print one line to stderr and exit non-zero; no tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from santa_lsp import __version__
from santa_lsp.config import DEFAULT_MODEL, MODES, Options, add_option_arguments, options_from_args
from santa_lsp.errors import SantaError

MAX_FILE_BYTES = 64 * 1024 * 1024


MODEL_OPTIONS = ("model", "revision", "endpoint", "device", "dtype", "threads")


def _model_args(p: argparse.ArgumentParser) -> None:
    add_option_arguments(p, MODEL_OPTIONS)
    p.add_argument("--offline", action="store_true", help="never touch the network (like HF_HUB_OFFLINE=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="santa-lsp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"santa-lsp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the language server")
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="speak LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", action="store_true", help="listen on a TCP socket")
    serve.add_argument("--host", default=None, help="address to listen on, with --tcp (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="TCP port, with --tcp (default: 2087)")
    add_option_arguments(serve, ("model",))  # the initial model: clients can choose another

    complete = sub.add_parser("complete", help="print the completion at a cursor in FILE")
    complete.add_argument("file", type=Path)
    complete.add_argument("--line", type=int, required=True, help="1-based line")
    complete.add_argument("--column", type=int, required=True, help="1-based column, in characters")
    _model_args(complete)
    add_option_arguments(complete, ("max_new_tokens", "mode", "fim_order", "max_latency_ms", "context_budget"))
    complete.add_argument("--stats", action="store_true", help="print timings and cache figures to stderr")

    evaluate = sub.add_parser("eval", help="measure completion quality on HumanEval-infilling problems")
    evaluate.add_argument("--data", type=Path, required=True,
                          help="problems, .jsonl or .jsonl.gz (task_id, prompt, suffix, canonical_solution, test, entry_point)")
    _model_args(evaluate)
    add_option_arguments(evaluate, ("max_new_tokens", "fim_order", "token_healing"), defaults={"max_new_tokens": 128})
    # Not the mode option: `task` (each hole's own shape) exists only here.
    evaluate.add_argument("--mode", default="task", choices=("task", *MODES),
                          help="task: the shape of each hole (default); otherwise the completion mode option")
    evaluate.add_argument("--no-postprocess", action="store_true", help="score the raw model output")
    evaluate.add_argument("--compare", action="store_true",
                          help="run every FIM order with post-processing on and off (ignores --fim-order, --no-postprocess)")
    evaluate.add_argument("--execute", action="store_true",
                          help="run each problem's tests on the accepted suggestion (pass@1); runs model-written code")
    evaluate.add_argument("--timeout", type=float, default=10.0, help="seconds per test run (default: %(default)s)")
    evaluate.add_argument("--derive", default="lines", choices=("lines", "body"),
                          help="holes for records without a suffix (plain HumanEval): one per solution line, "
                               "or the whole body")
    evaluate.add_argument("--stride", type=int, default=1, help="every K-th problem only (a spread-out sample)")
    evaluate.add_argument("--typed", type=int, default=0, metavar="N",
                          help="the user has typed the first N characters of each single-line hole (token healing)")
    evaluate.add_argument("--limit", type=int, default=0, help="at most N problems")
    evaluate.add_argument("--json", type=Path, default=None, help="write the summary and per-problem results here")

    download = sub.add_parser("download", help="fetch a model into the Hugging Face cache")
    download.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    download.add_argument("--revision", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and not args.tcp and (args.port is not None or args.host is not None):
        parser.error("--port and --host need --tcp (the default transport is stdio)")
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="santa-lsp %(levelname)s %(name)s: %(message)s")
    if getattr(args, "offline", False):
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return {"serve": _serve, "complete": _complete, "download": _download, "eval": _eval}[args.command](args)
    except SantaError as err:
        print(f"santa-lsp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    from santa_lsp.lsp.server import run

    return run(tcp=args.tcp, host=args.host or "127.0.0.1", port=2087 if args.port is None else args.port,
               options=options_from_args(args))


def read_source(path: Path) -> str:
    """Read a source file as an editor would: UTF-8, undecodable bytes replaced, not binary."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SantaError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise SantaError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SantaError(f"{path} is a directory") from None
    except OSError as err:
        raise SantaError(f"cannot read {path}: {err.strerror}") from None
    if b"\0" in data[:8192]:
        raise SantaError(f"{path} looks like a binary file")
    return data.decode("utf-8", errors="replace")


def offset_of(text: str, line: int, column: int) -> int:
    """Character offset of a 1-based (line, column); column may be one past the line's end."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise SantaError(f"line {line} is outside the file (1..{len(lines)})")
    width = len(lines[line - 1].rstrip("\r"))
    if not 1 <= column <= width + 1:
        raise SantaError(f"column {column} is outside line {line} (1..{width + 1})")
    return sum(len(s) + 1 for s in lines[: line - 1]) + column - 1


def _complete(args: argparse.Namespace) -> int:
    from santa_lsp.engine import load_engine
    from santa_lsp.service import CompletionService

    text = read_source(args.file)
    cursor = offset_of(text, args.line, args.column)
    opts = options_from_args(args)
    loaded = load_engine(opts)
    service = CompletionService(loaded.engine, opts, interactive=True)
    result = service.complete(text, cursor, doc=str(args.file))
    if result is None or not result.text:
        print(f"santa-lsp: no suggestion: {_no_suggestion_reason(text, cursor, opts, str(args.file), result)}",
              file=sys.stderr)
    if args.stats:
        line = f"model={loaded.model} device={loaded.device} dtype={loaded.dtype} load={loaded.load_s:.2f}s"
        if result is not None and result.generation is not None:
            g = result.generation
            line += (f" prompt={g.prompt_tokens} generated={g.generated_tokens} stop={g.stop_reason}"
                     f"{' time-limited' if result.time_limited else ''}")
        elif result is not None:
            line += f" source={result.source}"
        else:
            line += " model-run=no"
        if result is not None:
            line += " " + " ".join(f"{k}={v:.1f}ms" for k, v in result.timings_ms.items())
        print(line, file=sys.stderr)
    sys.stdout.write((result.text if result else "") + "\n")
    return 0


def _no_suggestion_reason(text: str, cursor: int, opts: Options, path: str, result: object) -> str:
    """Why `complete` printed an empty line: declined here, or the model said nothing usable."""
    from santa_lsp import context as ctxmod

    if result is None:
        if ctxmod.analyze(text, cursor, opts.mode, ctxmod.language_of(path)) is None:
            return "the cursor is inside the indentation of a line of code (santa-lsp completes after it)"
        return "the request was cancelled"
    raw = getattr(result, "raw", "")
    if not raw.strip():
        return "the model's output was empty (it ended the completion at once)"
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return f"the model's output was empty after post-processing (raw: {shown!r})"


def _eval(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from santa_lsp.engine import load_engine
    from santa_lsp.eval import evaluate, format_summary, load_problems, typed_into
    from santa_lsp.service import CompletionService

    problems = [typed_into(p, args.typed) for p in load_problems(args.data, args.derive)[:: max(1, args.stride)]]
    if args.limit > 0:
        problems = problems[: args.limit]
    opts = options_from_args(args)
    loaded = load_engine(opts)
    service = CompletionService(loaded.engine, opts)
    runs = [(o, p) for o in ("spm", "psm") for p in (True, False)] if args.compare else \
        [(args.fim_order, not args.no_postprocess)]
    reports = []
    for order, post in runs:
        loaded.engine.clear_cache()  # each run starts cold, so their reuse figures compare
        reports.append(evaluate(service, problems, dataclasses.replace(opts, fim_order=order), args.mode, post,
                                args.execute, args.timeout))
    print(f"model={loaded.model} device={loaded.device} dtype={loaded.dtype} problems={len(problems)} "
          f"data={args.data}")
    print(format_summary([r.summary() for r in reports]))
    if args.json is not None:
        args.json.write_text(json.dumps([{"summary": r.summary(), "results": [dataclasses.asdict(x) for x in r.results]}
                                         for r in reports], indent=1))
    return 0


def _download(args: argparse.Namespace) -> int:
    from santa_lsp.engine.hub import complete_checkpoint, offline_mode, resolve
    from santa_lsp.errors import ModelOfflineError

    try:
        path = resolve(args.model, args.revision, allow_download=True)
    except ModelOfflineError as err:
        why = ("HF_HUB_OFFLINE is set (unset it, or drop --offline, to download)" if offline_mode()
               else f"{err.reason}")
        raise SantaError(f"cannot download '{args.model}': {why}. Without internet access here, run "
                         "`santa-lsp download` on a machine that has it and copy its Hugging Face cache "
                         "(~/.cache/huggingface/hub) here, or give the model option a local directory.") from None
    if args.model != "bundled" and not complete_checkpoint(path):
        raise SantaError(f"{path} holds no checkpoint (config.json and *.safetensors or pytorch_model*.bin); "
                         "`download` fetches hub ids such as bigcode/santacoder")
    print(path)
    return 0
