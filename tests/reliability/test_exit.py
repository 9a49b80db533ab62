"""The server never outlives its editor: stdin closed, client killed, or parent process gone,
it exits within 2 seconds, even in the middle of a long generation or of loading the model."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import record

from benchmarks.lsp_client import RawClient, server_command, server_env
from santa_lsp.engine.model import GPTBigCode, ModelConfig, init_random
from santa_lsp.engine.weights import save_gpt_bigcode

EXIT_WITHIN_S = 2.0


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """Big enough that 1024 greedy tokens take seconds on one thread: a generation to interrupt."""
    path = tmp_path_factory.mktemp("slow-model")
    config = ModelConfig(vocab_size=384, n_positions=2048, n_embd=256, n_layer=4, n_head=4, n_inner=1024)
    model = init_random(GPTBigCode(config), seed=0)
    with torch.no_grad():
        model.wte.weight.mul_(50)  # the output repeats the last token: never an early stop
    save_gpt_bigcode(model.eval(), path)
    (path / "tokenizer.json").write_bytes(tiny_tokenizer.read_bytes())
    return path


def gone_within(pid: int, seconds: float) -> float | None:
    """Seconds until process `pid` is gone (or a zombie), None if it is still there after `seconds`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds + 0.5:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return time.monotonic() - t0
        except FileNotFoundError:
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


def test_stdin_closed_during_generation(slow_model_dir, tmp_path):
    client = RawClient(stderr_path=tmp_path / "stderr.log")
    try:
        client.initialize({"model": str(slow_model_dir), "maxNewTokens": 1024, "mode": "multi-line"})
        client.wait_ready(timeout=90)
        client.open("file:///exit/a.py", "def f(x):\n    ")
        request = client.inline("file:///exit/a.py", 1, 4)
        time.sleep(0.5)
        assert request not in client.responses, "the generation should still be running"
        t0 = time.monotonic()
        client.proc.stdin.close()
        client.proc.wait(EXIT_WITHIN_S + 3)
        took = time.monotonic() - t0
        record("exit.stdin_closed_during_generation_s", round(took, 2))
        assert took < EXIT_WITHIN_S
    finally:
        client.close()


def test_stdin_closed_while_loading(tiny_model_dir, tmp_path):
    client = RawClient(stderr_path=tmp_path / "stderr.log")
    try:
        client.initialize({"model": str(tiny_model_dir)})
        t0 = time.monotonic()
        client.proc.stdin.close()
        client.proc.wait(EXIT_WITHIN_S + 3)
        took = time.monotonic() - t0
        record("exit.stdin_closed_while_loading_s", round(took, 2))
        assert took < EXIT_WITHIN_S
    finally:
        client.close()


CLIENT = textwrap.dedent("""
    import json, subprocess, sys, time
    server = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"processId": None, "capabilities": {}, "initializationOptions": {"model": %r}}})
    server.stdin.write(b"Content-Length: %%d\\r\\n\\r\\n%%s" %% (len(body), body.encode()))
    server.stdin.flush()
    server.stdout.readline()  # the answer has come: the server is up
    print(server.pid, flush=True)
    time.sleep(600)
""")


def test_client_killed(tiny_model_dir, tmp_path):
    """The editor dies (SIGKILL): the server's stdin closes and it exits."""
    editor = subprocess.Popen([sys.executable, "-c", CLIENT % str(tiny_model_dir), *server_command()],
                              stdout=subprocess.PIPE, env=server_env())
    try:
        server_pid = int(editor.stdout.readline())
        time.sleep(0.5)
        editor.kill()
        editor.wait(5)
        took = gone_within(server_pid, EXIT_WITHIN_S)
        record("exit.client_killed_s", took)
        assert took is not None and took < EXIT_WITHIN_S, "the server outlived its killed client"
    finally:
        editor.kill()
        editor.wait(5)


def test_parent_process_gone(tiny_model_dir, tmp_path):
    """The process named in initialize's processId exits while stdin stays open (a client that
    leaked the pipe to another process): the server notices and exits."""
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    client = RawClient(stderr_path=tmp_path / "stderr.log")
    try:
        client.initialize({"model": str(tiny_model_dir)}, process_id=parent.pid)
        time.sleep(0.3)
        t0 = time.monotonic()
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        client.proc.wait(EXIT_WITHIN_S + 3)
        took = time.monotonic() - t0
        record("exit.parent_gone_s", round(took, 2))
        assert took < EXIT_WITHIN_S
        assert client.proc.returncode != 0  # not a clean shutdown: the client vanished
    finally:
        parent.kill()
        client.close()
