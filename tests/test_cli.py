"""The one-shot CLI on real files, as a user runs it: output on stdout, clear errors, no tracebacks."""

from __future__ import annotations

import subprocess
import time
import sys

import pytest

from santa_lsp.cli import offset_of
from santa_lsp.errors import SantaError


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "santa_lsp", *args], capture_output=True, text=True,
                          timeout=timeout, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "demo.py"
    path.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    return path


def test_complete_prints_a_completion(source, tiny_model_dir):
    proc = run("complete", str(source), "--line", "2", "--column", "12", "--model", str(tiny_model_dir),
               "--mode", "single-line", "--max-new-tokens", "8", "--stats")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n") and "\n" not in proc.stdout[:-1]  # one line
    assert "generated=" in proc.stderr and "prefill=" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--line", "9", "--column", "1"], "line 9 is outside the file"),
        (["--line", "2", "--column", "40"], "column 40 is outside line 2"),
    ],
)
def test_bad_position(source, tiny_model_dir, args, message):
    proc = run("complete", str(source), *args, "--model", str(tiny_model_dir))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_path_and_binary_file(tmp_path, tiny_model_dir):
    proc = run("complete", str(tmp_path / "missing.py"), "--line", "1", "--column", "1")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    proc = run("complete", str(binary), "--line", "1", "--column", "1", "--model", str(tiny_model_dir))
    assert proc.returncode == 2 and "binary" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_model(source, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run("complete", str(source), "--line", "2", "--column", "12", "--model", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "no config.json" in proc.stderr and "Traceback" not in proc.stderr


def test_invalid_utf8_file_still_completes(tmp_path, tiny_model_dir):
    path = tmp_path / "latin1.py"
    path.write_bytes(b"name = 'caf\xe9'\nx = \n")
    proc = run("complete", str(path), "--line", "2", "--column", "5", "--model", str(tiny_model_dir),
               "--max-new-tokens", "4")
    assert proc.returncode == 0, proc.stderr


def test_offset_of_counts_characters():
    text = "é😀x\nab\r\ncd"
    assert offset_of(text, 1, 3) == 2
    assert offset_of(text, 2, 3) == 6  # end of "ab" before the \r
    assert offset_of(text, 3, 1) == 8
    with pytest.raises(SantaError):
        offset_of(text, 0, 1)


def test_project_files_do_not_shadow_the_standard_library(tmp_path, tiny_model_dir):
    """Editors start the server inside the user's project; its numbers.py must not break torch."""
    (tmp_path / "numbers.py").write_text("raise ImportError('the project shadowed numbers')\n")
    (tmp_path / "a.py").write_text("x = 1\ny = \n")
    proc = subprocess.run([sys.executable, "-m", "santa_lsp", "complete", "a.py", "--line", "2", "--column", "5",
                           "--model", str(tiny_model_dir), "--max-new-tokens", "4"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


# -- honest CLI (issue 19) ------------------------------------------------------------------

@pytest.mark.parametrize("name, hint", [("bundeld", "Did you mean 'bundled'?"), ("nonsense", "hub id")])
def test_mistyped_model_name_exits_2(source, name, hint):
    proc = run("complete", str(source), "--line", "2", "--column", "12", "--model", name)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot load model '{name}'" in proc.stderr and hint in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_synthetic_tiny_completes(source):
    proc = run("complete", str(source), "--line", "2", "--column", "12", "--model", "synthetic:tiny",
               "--max-new-tokens", "4", "--stats")
    assert proc.returncode == 0, proc.stderr
    assert "model=synthetic:tiny" in proc.stderr and "Traceback" not in proc.stderr


def test_no_suggestion_says_why(tmp_path, tiny_model_dir):
    path = tmp_path / "indent.py"
    path.write_text("def f():\n    return 1\n")
    proc = run("complete", str(path), "--line", "2", "--column", "3", "--model", str(tiny_model_dir), "--stats")
    assert proc.returncode == 0 and proc.stdout == "\n"
    assert "no suggestion: the cursor is inside the indentation of a line of code" in proc.stderr
    assert f"model={tiny_model_dir}" in proc.stderr  # --stats prints its line even then


def test_device_cuda_error_names_the_model(source, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run("complete", str(source), "--line", "2", "--column", "12", "--model", str(tiny_model_dir),
               "--device", "cuda")
    assert proc.returncode == 2 and f"cannot load model '{tiny_model_dir}'" in proc.stderr
    assert "(device)" not in proc.stderr


def test_port_without_tcp_is_an_error():
    proc = run("serve", "--port", "3000", timeout=30)
    assert proc.returncode == 2 and "--tcp" in proc.stderr


def test_serve_prints_no_pygls_info_lines():
    proc = subprocess.run([sys.executable, "-m", "santa_lsp", "serve"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert "pygls" not in proc.stderr, proc.stderr


def test_download_offline_names_hf_hub_offline():
    proc = run("download", "santa-lsp-tests/not-cached")
    assert proc.returncode == 2 and "HF_HUB_OFFLINE" in proc.stderr
    assert "santa-lsp download santa-lsp-tests/not-cached" not in proc.stderr  # not the command just run


def test_download_of_an_empty_directory_fails(tmp_path):
    proc = run("download", str(tmp_path))
    assert proc.returncode == 2 and "holds no checkpoint" in proc.stderr


def test_ctrl_c_on_serve_tcp_is_quiet():
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "santa_lsp", "serve", "--tcp", "--port", str(port)],
                            stderr=subprocess.PIPE, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 30
        while True:  # a client connects (and stays connected)
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server did not listen"
                time.sleep(0.1)
        with conn:
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            stderr = proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
