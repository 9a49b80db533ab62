"""A bounded keystroke storm against the real server (the full run is `python -m benchmarks.storm`)."""

from __future__ import annotations

from reliability_helpers import STORM_PAIRS, audit_log_lines, audited_command, record

from benchmarks.lsp_client import server_env
from benchmarks.storm import StormConfig, run_storm


def test_storm_holds(tiny_model_dir, tmp_path):
    """The server runs under the socket audit hook (see test_security.py) and without
    HF_HUB_OFFLINE: a local model serving a storm opens no socket at all (no telemetry)."""
    audit = tmp_path / "audit.log"
    env = server_env({"SANTA_AUDIT_LOG": str(audit)})
    env.pop("HF_HUB_OFFLINE")
    report = run_storm(StormConfig(model=str(tiny_model_dir), pairs=STORM_PAIRS, rate=120, docs=20, cancel=0.1,
                                   max_new_tokens=8, answer_timeout=30, max_rss_growth_mb=16,
                                   stderr_path=tmp_path / "server.log", command=audited_command("serve", "--stdio"),
                                   env=env))
    record("storm", {k: report.get(k) for k in ("pairs", "documents", "rate_pairs_per_s", "responses", "bursts",
                                                 "finals_with_suggestion", "final_latency_ms", "rss_mb", "server_stats")})
    assert report["failures"] == [], report
    assert report["rate_pairs_per_s"] >= 100
    responses = report["responses"]
    assert responses["unanswered"] == 0 and responses["error"] == 0
    assert sum(responses.values()) == report["pairs"]
    assert report["finals_with_suggestion"] == report["bursts"] > 0
    assert report["exit_status"] == 0
    stats = report["server_stats"]
    assert stats["errors"] == 0
    assert stats["maxQueuedPerDocument"] <= 1 and stats["queued"] == 0
    assert audit_log_lines(audit) == []


def test_storm_command_line():
    from benchmarks.storm import build_parser

    args = build_parser().parse_args(["--model", "bundled", "--pairs", "6000", "--rate", "150", "--pause-ms", "300"])
    assert (args.pairs, args.rate, args.pause_ms, args.docs) == (6000, 150.0, 300.0, 20)
