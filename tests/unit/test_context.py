"""Trigger decision: no suggestion, a single line, or a block, on realistic cursors."""

from __future__ import annotations

import pytest

from santa_lsp.context import analyze


def at(marked: str, mode: str = "auto"):
    """analyze() at the `|` in `marked`."""
    cursor = marked.index("|")
    return analyze(marked[:cursor] + marked[cursor + 1 :], cursor, mode)


@pytest.mark.parametrize("marked", [
    "def f():\n    |return 1\n",  # inside the indentation of a line of code
])
def test_no_suggestion(marked):
    assert at(marked) is None


@pytest.mark.parametrize("marked", [
    "print(|)\n",  # auto-closed bracket after the cursor
    "x = foo(|, 2)\n",  # code after the cursor
    "name = \"|\"\n",
    "for i in range(10):\n    total += |\n",  # end of a line with code
    "def f(x):\n    y = x * 2\n    |\n    return y\n",  # blank line inside a block that goes on
    "x = 1\n|\ny = 2\n",
    # Inside or right before a word: the hole of an identifier (replay kinds inside-word and
    # identifier-rest); post-processing keeps the rest of the word from doubling.
    "x = 1\npri|nt(x)\n",
    "total = |count + 1\n",
    # Braces that are not a code block: object literals, destructuring, templates, dicts.
    "const o = {|}\n", "const {|} = obj\n", "const s = `${|}`\n", "d = {|}\n", "f'{|}'\n",
    "foo({|})\n",
])
def test_single_line(marked):
    ctx = at(marked)
    assert ctx is not None and ctx.mode == "single-line"


@pytest.mark.parametrize("marked", [
    "def f(x):\n    |",  # empty line after an opener
    "def f(x):\n|\n",  # not yet indented
    "class A:\n    def f(self):\n        |\n\nx = 1\n",
    "if (ready) {\n  |\n}\n",
    "function f() {|}\n",  # between auto-closed braces of a code block
    "if (x) {|}\n", "} else {|}\n", "const f = () => {|}\n", "class A extends B {|}\n", "try {|}\n",
    'def f(x):\n    """Doc."""\n    |\n\n\ndef g():\n    pass\n',  # an empty body after a docstring
    "import os\n\nfor name in os.listdir():\n    print(name)\n    |",  # end of a block at the end of the file
    "|",  # an empty file
])
def test_multi_line(marked):
    ctx = at(marked)
    assert ctx is not None and ctx.mode == "multi-line"


def test_column_zero_of_a_code_line_inserts_a_line_above():
    ctx = at("def f(x):\n    y = 1\n|    return y\n")
    assert ctx.mode == "single-line" and ctx.opens_line
    assert ctx.line_suffix == "    return y"
    assert not at("print(|)").opens_line


@pytest.mark.parametrize("mode", ["single-line", "multi-line"])
def test_mode_option_forces_the_shape(mode):
    assert at("def f(x):\n    |", mode).mode == mode
    assert at("print(|)", mode).mode == mode
    assert at("    |return 1", mode) is None  # still nothing inside the indentation of code


def test_lines_around_the_cursor():
    ctx = at("a = 1\n\n    b = 2\n    c|\n\nd = 4\ne = 5")
    assert ctx.line_prefix == "    c" and ctx.line_suffix == ""
    assert ctx.previous_line == "    b = 2"
    assert ctx.following_lines == ["", "d = 4", "e = 5"]
    assert ctx.indent == "    "
    crlf = at("x = 1\r\nprint(|)\r\ny = 2\r\n")
    assert crlf.line_suffix == ")" and crlf.following_lines == ["y = 2", ""]
