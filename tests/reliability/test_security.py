"""Security: no network unless a download is asked for (none at all offline, no telemetry),
no pickle, never trust_remote_code, TCP on loopback by default with a warning elsewhere, and
`eval --execute` confining the code it runs.

The network checks run santa-lsp in a subprocess under a `sys.addaudithook` hook that records
(and blocks) every socket the process creates or uses; only AF_UNIX socket pairs (asyncio's
self-pipe) and loopback addresses are allowed. The storm test runs its server under the same
hook without HF_HUB_OFFLINE: thousands of completions from a local model, not one socket.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import AUDIT_PRELUDE, audit_log_lines, audited_command, record

from benchmarks.lsp_client import RawClient, server_env
from santa_lsp.cli import build_parser
from santa_lsp.errors import ModelLoadError
from santa_lsp.lsp import process

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "santa_lsp"

network_use = audit_log_lines


def clean_env(tmp_path: Path, log: Path, offline: bool) -> dict[str, str]:
    env = server_env({"SANTA_AUDIT_LOG": str(log), "HF_HOME": str(tmp_path / "hf-home")})
    if not offline:
        env.pop("HF_HUB_OFFLINE", None)
    return env


def test_the_audit_hook_sees_network_use(tmp_path):
    """Control: the hook does record (and block) an Internet socket and a name lookup."""
    log = tmp_path / "audit.log"
    code = AUDIT_PRELUDE + textwrap.dedent("""
        for attempt in (lambda: socket.socket(socket.AF_INET6), lambda: socket.getaddrinfo("example.org", 443)):
            try:
                attempt()
            except PermissionError:
                pass
    """)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "SANTA_AUDIT_LOG": str(log)}, timeout=60, check=True)
    events = network_use(log)
    assert len(events) == 2 and events[0].startswith("socket.__new__") and events[1].startswith("socket.getaddrinfo")


def test_offline_hub_model_opens_no_socket(tmp_path):
    """`--offline` with a hub model that is not cached: the fallback, and not one socket."""
    log, src = tmp_path / "audit.log", tmp_path / "a.py"
    src.write_text("import os\n\nprint(")
    env = clean_env(tmp_path, log, offline=False)
    proc = subprocess.run(audited_command("complete", str(src), "--line", "3", "--column", "7", "--model",
                                          "bigcode/santacoder", "--offline", "--max-new-tokens", "4"),
                          env=env, capture_output=True, timeout=120)
    assert proc.returncode in (0, 2), proc.stderr  # 2: no bundled model in this checkout yet
    assert b"Traceback" not in proc.stderr
    assert network_use(log) == []
    record("security.offline_cli_sockets", 0)


def test_hf_hub_offline_server_opens_no_socket(tmp_path):
    """HF_HUB_OFFLINE=1 and a hub model that is not cached: the server says so, falls back, and
    never touches the network."""
    log = tmp_path / "audit.log"
    env = clean_env(tmp_path, log, offline=True)
    client = RawClient(audited_command("serve", "--stdio"), env=env, stderr_path=tmp_path / "stderr.log")
    try:
        client.initialize({"model": "bigcode/santacoder"})
        status = client.wait_ready(timeout=90, states=("ready", "error"))
        assert "HF_HUB_OFFLINE" in json.dumps(status) or status["state"] == "ready", status
        assert client.shutdown() == 0
    finally:
        client.close()
    assert network_use(log) == []


# -- no pickle, no remote code ---------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("layout", ["torch-zip", "raw-pickle"])
def test_malicious_pickle_checkpoint_is_refused(tiny_model_dir, tmp_path, layout):
    """A pytorch_model.bin whose unpickling would run code: refused with a clear error, and the
    code never runs (torch.load with weights_only=True)."""
    from santa_lsp.engine.weights import load_checkpoint

    path = tmp_path / "evil"
    path.mkdir()
    (path / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    marker = tmp_path / "pwned"
    if layout == "torch-zip":
        torch.save({"transformer.wte.weight": _Evil(str(marker))}, path / "pytorch_model.bin")
    else:
        import pickle

        (path / "pytorch_model.bin").write_bytes(pickle.dumps(_Evil(str(marker)), protocol=2))
    with pytest.raises(ModelLoadError, match="damaged or unreadable"):
        load_checkpoint(path, "evil")
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _package_sources():
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))]


def test_package_never_trusts_remote_code_or_unpickles():
    problems = []
    for path, tree in _package_sources():
        rel = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle", "marshal", "shelve") for n in names):
                    problems.append(f"{rel}:{node.lineno} imports a pickle-like module")
        for call in _calls(tree):
            for kw in call.keywords:
                if kw.arg == "trust_remote_code" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{rel}:{call.lineno} trust_remote_code")
            func = ast.unparse(call.func)
            if func.endswith("torch.load") or func == "load" and "torch" in ast.unparse(call):
                weights_only = [kw for kw in call.keywords if kw.arg == "weights_only"]
                if not (weights_only and isinstance(weights_only[0].value, ast.Constant) and weights_only[0].value.value is True):
                    problems.append(f"{rel}:{call.lineno} torch.load without weights_only=True")
            if func in ("eval", "exec", "pickle.load", "pickle.loads"):
                problems.append(f"{rel}:{call.lineno} {func}()")
    assert problems == []


def test_only_the_hub_module_talks_to_the_network():
    """Network modules are imported in engine/hub.py (downloads, and the probe before one) and
    engine/remote.py (the OpenAI-compatible backend, used only when `endpoint` is set; the
    offline audits above show it opens nothing otherwise)."""
    network = ("socket", "http", "requests", "httpx", "aiohttp", "websockets", "huggingface_hub", "urllib3")
    users = set()
    for path, tree in _package_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] in network for n in names) or any(n.startswith("urllib.request") for n in names):
                users.add(str(path.relative_to(PACKAGE)))
    assert users <= {"engine/hub.py", "engine/remote.py", "storm.py"}  # storm.py: the test driver, pipes only


# -- TCP ----------------------------------------------------------------------------------------------
def test_loopback_detection():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert process.is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""):
        assert not process.is_loopback(host), host


def test_tcp_defaults_to_loopback(tmp_path):
    args = build_parser().parse_args(["serve", "--tcp"])
    assert args.host is None  # not given: the server listens on 127.0.0.1, as checked below
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "santa_lsp", "serve", "--tcp", "--port", str(port)],
                            env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        listening = None
        deadline = time.monotonic() + 30
        while listening is None and time.monotonic() < deadline:
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    listening = local.rsplit(":", 1)[0]
            time.sleep(0.1)
        assert listening == "0100007F", f"listening on {listening}, not 127.0.0.1"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                               "params": {"processId": None, "capabilities": {}}}).encode()
            conn.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.settimeout(20)
            assert b"Content-Length" in conn.recv(65536)
    finally:
        proc.kill()
        proc.wait(5)
    assert b"WARNING" not in proc.stderr.read()


def test_tcp_elsewhere_warns():
    """192.0.2.1 (TEST-NET-1) is not ours: the warning comes first, then a one-line bind error."""
    proc = subprocess.run([sys.executable, "-m", "santa_lsp", "serve", "--tcp", "--host", "192.0.2.1", "--port", "2087"],
                          env=server_env(), capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert "other machines can reach this server" in err
    assert proc.returncode == 2 and "Traceback" not in err


# -- eval --execute -------------------------------------------------------------------------------------
def test_execute_confines_untrusted_code(tmp_path, monkeypatch):
    from santa_lsp.eval import run_tests

    monkeypatch.setenv("SANTA_SECRET_TOKEN", "hunter2")
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    assert run_tests("while True: pass", 1.0) == (False, "timed out after 1s")
    assert time.monotonic() - t0 < 5
    assert run_tests("x = bytearray(4 << 30)", 10)[0] is False  # address-space limit
    assert run_tests("open('big', 'wb').write(b'x' * (8 << 20))", 10)[0] is False  # file-size limit
    assert run_tests("import os\nassert 'SANTA_SECRET_TOKEN' not in os.environ\nassert 'HOME' not in os.environ", 10) == (True, "")
    assert run_tests("open('left-behind', 'w').write('x')", 10) == (True, "")
    assert not (tmp_path / "left-behind").exists()  # it ran in a temporary directory
    assert run_tests("import sys\nassert sys.flags.isolated", 10) == (True, "")


def test_execute_kills_what_the_code_leaves_running(tmp_path):
    """Regression: a child forked by the tested code, its pipes closed, outlived run_tests."""
    from santa_lsp.eval import run_tests

    pid_file = tmp_path / "child.pid"
    program = textwrap.dedent(f"""
        import os, time
        pid = os.fork()
        if pid == 0:
            os.closerange(0, 3)
            time.sleep(60)
            os._exit(0)
        open({str(pid_file)!r}, "w").write(str(pid))
    """)
    assert run_tests(program, 10) == (True, "")
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        pytest.fail("the forked child survived run_tests")
