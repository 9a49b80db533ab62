"""Keystroke storm: drive the real server over stdio the way a fast typist in a busy editor would.

`python -m benchmarks.storm --model DIR --pairs 3000 --rate 150` (from the repository root)
starts `santa-lsp serve --stdio`, opens `--docs` documents and types bursts of characters into
them, one document per burst: each keystroke is a `didChange` (incremental) followed at once by
an `inlineCompletion` request, sent at `--rate` pairs per second. A share of the requests
(`--cancel`) is cancelled with `$/cancelRequest`. The last request of a burst is never
cancelled and must come back with a suggestion; its latency is what a user waits for when they
stop typing. The next burst goes to another document at once (or after `--pause-ms`, a typist
who stops), so up to one final request per document is in flight while the storm goes on. The
reported rate is the typing rate: pauses are not counted.

Checks (the report's `failures` lists every broken one; the exit status is 1 if any):
every request answered (a result, or the RequestCancelled error); no other error; the
last request of each burst answered with a non-empty suggestion; at most one queued
inference per document (from `santa.status`); the server alive until `shutdown`/`exit`,
then gone with status 0. Resident memory is sampled from /proc; the growth after warm-up is
reported (and checked with `--max-rss-growth-mb`).

The server is driven through `benchmarks.lsp_client.RawClient`, the client the reliability
tests use too; `tests/reliability/test_storm.py` runs a bounded storm in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.lsp_client import REQUEST_CANCELLED, RawClient
from santa_lsp.stats import percentile


def rss_mb(pid: int) -> float | None:
    """Resident set size of process `pid` in MiB (Linux), None elsewhere or once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- the storm ---------------------------------------------------------------------------------
# What bursts type: a new line with one of these. Each ends after an opener, where a suggestion
# is expected (for the random tiny test models too: they repeat the last token).
SNIPPETS = (
    "result = compute(", "print(", "values = sorted(", "total += len(", "if is_valid(",
    "items.append(", "return dict(", "logger.info(", "data = load(", "for key in range(",
)


def make_document(i: int, rng: random.Random) -> str:
    """A plausible Python module: a few functions, a comment with non-ASCII text, a class."""
    parts = [f'"""Module {i}: helpers for the storm (ünïcode and an emoji 🐍 in a docstring)."""\n\nimport os\n\n']
    for j in range(rng.randint(2, 6)):
        parts.append(f"def helper_{i}_{j}(a, b):\n    # add {j}\n    value = a + b * {j}\n    return value\n\n\n")
    parts.append(f"class Thing{i}:\n    def __init__(self, x):\n        self.x = x\n\n\ndef main():\n    x = 1")
    return "".join(parts)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Doc:
    uri: str
    text: str
    version: int = 1
    final_id: int | None = None  # the unanswered last request of its last burst

    @property
    def cursor(self) -> tuple[int, int]:
        """(line, UTF-16 character) of the end of the document, where typing happens."""
        last = self.text.rsplit("\n", 1)[-1]
        return self.text.count("\n"), utf16_len(last)


@dataclass
class StormConfig:
    model: str
    pairs: int = 2000
    rate: float = 150.0  # didChange + inlineCompletion pairs per second
    docs: int = 20
    cancel: float = 0.1  # share of requests cancelled with $/cancelRequest
    pause_ms: float = 0.0  # after each burst, the typist stops this long (0: on to the next document at once)
    max_lines_per_burst: int = 3  # a burst types 1..this many lines, each one of SNIPPETS
    # The last request of a burst must bring a non-empty suggestion (true for the test models,
    # which always suggest after an opener); otherwise any result that is not cancelled counts.
    require_suggestion: bool = True
    max_new_tokens: int = 16
    seed: int = 0
    warmup: float = 0.2  # share of the pairs after which RSS growth is measured
    max_rss_growth_mb: float | None = None
    answer_timeout: float = 60.0
    stderr_path: Path | None = None
    extra_options: dict[str, Any] = field(default_factory=dict)
    command: list[str] | None = None  # how to start the server (default: server_command())
    env: dict[str, str] | None = None  # its environment (default: server_env())


def run_storm(cfg: StormConfig) -> dict[str, Any]:
    """Run one storm and return the report (see the module docstring for what is checked)."""
    rng = random.Random(cfg.seed)
    options = {"model": cfg.model, "maxNewTokens": cfg.max_new_tokens, **cfg.extra_options}
    client = RawClient(cfg.command, cfg.env, stderr_path=cfg.stderr_path)
    report: dict[str, Any] = {"config": {k: v for k, v in vars(cfg).items() if k not in ("stderr_path", "command", "env")}}
    report["config"]["extra_options"] = cfg.extra_options
    failures: list[str] = []
    rss: list[tuple[int, float]] = []  # (pairs sent, MiB)
    try:
        t_start = time.monotonic()
        client.initialize(options, process_id=os.getpid())
        ready = client.wait_ready(timeout=cfg.answer_timeout * 2)
        report["model"] = {k: ready.get(k) for k in ("model", "device", "dtype", "loadSeconds")}
        report["startup_s"] = round(time.monotonic() - t_start, 2)
        docs = [_Doc(f"file:///storm/doc{i:02d}.py", make_document(i, rng)) for i in range(cfg.docs)]
        for doc in docs:
            client.open(doc.uri, doc.text)
        # Warm the model once so the first burst's figures are not the load's.
        line, char = docs[0].cursor
        client.wait(client.inline(docs[0].uri, line, char), cfg.answer_timeout)

        requests: list[int] = []
        cancelled_ids: set[int] = set()
        finals: list[int] = []
        interval = 1.0 / cfg.rate
        sent = 0
        next_at = time.monotonic()
        t0 = next_at
        previous: _Doc | None = None
        warm_at = int(cfg.pairs * cfg.warmup)
        while sent < cfg.pairs:
            # The next document: not the last one, and with its previous final request answered.
            free = [d for d in docs if d is not previous and (d.final_id is None or d.final_id in client.responses)]
            if not free:
                time.sleep(0.005)
                next_at = max(next_at, time.monotonic())
                continue
            doc = previous = rng.choice(free)
            keys: list[str] = []
            for _ in range(rng.randint(1, cfg.max_lines_per_burst)):
                snippet = rng.choice(SNIPPETS)
                keys += ["\n    "] + list(snippet)  # newline + indent arrive as one edit, as editors send them
            for k, key in enumerate(keys):
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
                line, char = doc.cursor
                doc.version += 1
                client.change(doc.uri, doc.version, line, char, key)
                doc.text += key
                line, char = doc.cursor
                msg_id = client.inline(doc.uri, line, char)
                requests.append(msg_id)
                sent += 1
                last = k == len(keys) - 1
                if last:
                    doc.final_id = msg_id
                    finals.append(msg_id)
                    if cfg.pause_ms > 0:
                        time.sleep(cfg.pause_ms / 1000)
                        next_at = time.monotonic()
                elif rng.random() < cfg.cancel:
                    # Cancel this request or an older one still in flight.
                    target = msg_id if rng.random() < 0.5 else rng.choice(requests[-20:])
                    if target not in finals:
                        client.notify("$/cancelRequest", {"id": target})
                        cancelled_ids.add(target)
                if sent % 100 == 0 or sent == warm_at:
                    mb = rss_mb(client.pid)
                    if mb is not None:
                        rss.append((sent, mb))
        t_sent = time.monotonic()
        # Every request must be answered.
        deadline = time.monotonic() + cfg.answer_timeout
        for msg_id in requests:
            if client.wait(msg_id, max(0.0, deadline - time.monotonic())) is None:
                break
        t_done = time.monotonic()
        mb = rss_mb(client.pid)
        if mb is not None:
            rss.append((sent, mb))

        kinds = {"suggestion": 0, "empty": 0, "cancelled": 0, "error": 0, "unanswered": 0}
        errors: list[Any] = []
        for msg_id in requests:
            got = client.responses.get(msg_id)
            if got is None:
                kinds["unanswered"] += 1
                continue
            msg = got[1]
            if "error" in msg:
                if msg["error"].get("code") == REQUEST_CANCELLED:
                    kinds["cancelled"] += 1
                else:
                    kinds["error"] += 1
                    errors.append(msg["error"])
            elif (msg.get("result") or {}).get("items"):
                kinds["suggestion"] += 1
            else:
                kinds["empty"] += 1
        final_lat = sorted(x for x in (client.latency_ms(i) for i in finals) if x is not None)
        finals_ok = sum(1 for i in finals if (client.responses.get(i, (0, {}))[1].get("result") or {}).get("items"))
        status = client.status(timeout=cfg.answer_timeout) or {}
        stats = status.get("stats", {})
        report.update({
            "pairs": sent,
            "documents": cfg.docs,
            "send_seconds": round(t_sent - t0, 2),
            "rate_pairs_per_s": round(sent / max(1e-9, t_sent - t0 - len(finals) * cfg.pause_ms / 1000), 1),
            "drain_seconds": round(t_done - t_sent, 2),
            "cancel_notifications": len(cancelled_ids),
            "responses": kinds,
            "errors_sample": errors[:5],
            "bursts": len(finals),
            "finals_with_suggestion": finals_ok,
            "final_latency_ms": _summary(final_lat),
            "server_stats": stats,
            "rss_mb": _rss_summary(rss, warm_at),
            "rss_samples_mb": [(n, round(mb, 1)) for n, mb in rss],  # (pairs sent, MiB)
        })
        if kinds["unanswered"]:
            failures.append(f"{kinds['unanswered']} requests never answered")
        if kinds["error"]:
            failures.append(f"{kinds['error']} requests answered with an error: {errors[:3]}")
        finals_answered = sum(1 for i in finals if "result" in client.responses.get(i, (0, {}))[1])
        report["finals_answered"] = finals_answered
        if finals_answered < len(finals):
            failures.append(f"only {finals_answered} of {len(finals)} final requests got a result")
        if cfg.require_suggestion and finals_ok < len(finals):
            failures.append(f"only {finals_ok} of {len(finals)} final requests got a suggestion")
        queued = stats.get("maxQueuedPerDocument")
        if queued is not None and queued > 1:
            failures.append(f"{queued} inferences queued for one document")
        growth = report["rss_mb"].get("growth_after_warmup")
        if cfg.max_rss_growth_mb is not None and growth is not None and growth > cfg.max_rss_growth_mb:
            failures.append(f"RSS grew {growth:.1f} MiB after warm-up (limit {cfg.max_rss_growth_mb})")
        if client.proc.poll() is not None:
            failures.append(f"server exited during the storm with status {client.proc.returncode}")
        code = client.shutdown()
        report["exit_status"] = code
        if code != 0:
            failures.append(f"server exit status after shutdown/exit: {code}")
    finally:
        client.close()
    report["failures"] = failures
    return report


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}

    def pct(p: float) -> float:
        return round(percentile(values, p), 1)

    return {"n": len(values), "p50": pct(50), "p95": pct(95), "p99": pct(99), "max": round(values[-1], 1)}


def _rss_summary(samples: list[tuple[int, float]], warm_at: int) -> dict[str, float | None]:
    if not samples:
        return {}
    after = [mb for n, mb in samples if n >= warm_at] or [samples[-1][1]]
    return {"first": round(samples[0][1], 1), "after_warmup": round(after[0], 1), "last": round(samples[-1][1], 1),
            "max": round(max(mb for _, mb in samples), 1), "growth_after_warmup": round(after[-1] - after[0], 1),
            "samples": len(samples)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.storm", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model for the server (a checkpoint directory, 'bundled', ...)")
    p.add_argument("--pairs", type=int, default=2000, help="didChange + inlineCompletion pairs (default: %(default)s)")
    p.add_argument("--rate", type=float, default=150.0, help="pairs per second (default: %(default)s)")
    p.add_argument("--docs", type=int, default=20, help="open documents (default: %(default)s)")
    p.add_argument("--cancel", type=float, default=0.1, help="share of requests cancelled (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pause-ms", type=float, default=0.0,
                   help="pause after each burst (default: none, the next burst starts at once in another document)")
    p.add_argument("--allow-empty-finals", action="store_true",
                   help="a burst's last request may be answered with no suggestion (a real model may have none)")
    p.add_argument("--max-rss-growth-mb", type=float, default=None, help="fail if RSS grows more after warm-up")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--server-log", type=Path, default=None, help="write the server's stderr here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = StormConfig(model=args.model, pairs=args.pairs, rate=args.rate, docs=args.docs, cancel=args.cancel,
                      max_new_tokens=args.max_new_tokens, seed=args.seed,
                      require_suggestion=not args.allow_empty_finals, pause_ms=args.pause_ms,
                      max_rss_growth_mb=args.max_rss_growth_mb,
                      stderr_path=args.server_log)
    report = run_storm(cfg)
    text = json.dumps(report, indent=1, default=str)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
