"""Odd documents, through the real server and through the CLI: each request gets a result
(a suggestion or an empty list) within a bounded time, never an error or a crash.

Bounds are generous for a loaded CI machine; RELIABILITY.md lists the measured times.
"""

from __future__ import annotations

import time

import pytest
from reliability_helpers import record

from santa_lsp.cli import main as cli_main

BOUND_S = 15.0  # per request, CI machine shared with other work
BIG = "".join(f"def f{i}(a, b):\n    return a + b * {i}\n\n" for i in range(300_000))  # 10.6 MB
LONG_LINE = "x = [" + ", ".join(f"f({i})" for i in range(120_000)) + ", "  # 1.2 MB, one line

# name -> (text, [(line, UTF-16 character)])
CASES = {
    "10MB": (BIG + "print(", [(BIG.count("\n"), 6), (450_000, 4), (10, 0)]),
    "1MB-line": (LONG_LINE, [(0, len(LONG_LINE)), (0, 500_001), (0, 5)]),
    "nul-and-controls": ("a = '\0\x01\x1b[31m\x7f'\n\0\0\nprint(\x0c\x0b", [(2, 6), (1, 1), (0, 5), (2, 8)]),
    "crlf-mixed": ("def f():\r\n    return 1\r\n\rif x:\n\r\n    y = (", [(0, 8), (1, 12), (3, 5), (5, 9), (4, 0)]),
    "tabs-mixed-indent": ("def f():\n\tif x:\n\t    y = 1\n  \t\n\t\tz = (", [(1, 6), (3, 3), (4, 7), (2, 5)]),
    "emoji-surrogates": ("s = '🐍👩‍💻é\u0301'\nprint('🐍', \ud83d)\n🐍🐍(", [(0, 5), (0, 6), (0, 7), (0, 14), (1, 9), (1, 12),
                                                              (2, 2), (2, 3), (2, 5)]),
    "form-feed-and-separators": ("a = 1\x0cb = 2\u2028c = (\u2029\n", [(0, 11), (1, 0)]),
    "empty": ("", [(0, 0), (3, 7)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_odd_document(shared_server, name):
    text, positions = CASES[name]
    uri = f"file:///odd/{name}.py"
    shared_server.open(uri, text)
    slowest = 0.0
    for line, character in positions:
        t0 = time.monotonic()
        reply = shared_server.wait(shared_server.inline(uri, line, character), BOUND_S)
        took = time.monotonic() - t0
        assert reply is not None, f"{name} {line}:{character}: no answer within {BOUND_S}s"
        assert "result" in reply, f"{name} {line}:{character}: {reply}"
        assert took < BOUND_S
        slowest = max(slowest, took)
    # An edit at the end, then a request: the document stays usable.
    line, character = positions[0]
    shared_server.change(uri, 2, line, character, "x")
    reply = shared_server.wait(shared_server.inline(uri, line, character + 1), BOUND_S)
    assert reply is not None and "result" in reply
    record(f"documents.{name}.slowest_request_s", round(slowest, 3))
    shared_server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


CLI_FILES = {
    "invalid-utf8.py": b"x = '\xff\xfe\xc3('\nprint(\xe2\x82",
    "crlf.py": b"def f():\r\n    return 1\r\nprint(",
    "latin1.py": "s = 'caf\xe9'\nprint(".encode("latin-1"),
    "bom.py": b"\xef\xbb\xbfimport os\nprint(",
    "late-nul.py": b"# " + b"a" * 9000 + b"\n\0x = 1\nprint(",
}


@pytest.mark.parametrize("name", list(CLI_FILES))
def test_cli_reads_odd_files(tiny_model_dir, tmp_path, capsys, name):
    path = tmp_path / name
    path.write_bytes(CLI_FILES[name])
    line = CLI_FILES[name].count(b"\n") + 1
    assert cli_main(["complete", str(path), "--line", str(line), "--column", "7", "--model", str(tiny_model_dir),
                     "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_cli_refuses_binary_files_with_a_message(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "binary.py"
    path.write_bytes(b"\0\1\2ELF" * 100)
    assert cli_main(["complete", str(path), "--line", "1", "--column", "1", "--model", str(tiny_model_dir)]) == 2
    assert "binary" in capsys.readouterr().err
