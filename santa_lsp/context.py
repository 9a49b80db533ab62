"""Cursor -> the shape of the suggestion to ask for: none, a single line, or a block.

- Code after the cursor on its line (`print(|)`, `retu| null;`, inside a word `getU|Name`):
  a single line; post-processing makes it meet the rest of the line without doubling it.
- An empty line after a block opener (`:`, `{`, ...), an empty body (a blank line whose
  block ends right after it), or the cursor between the braces of a code block
  (`function f() {|}`, not an object literal `= {|}`, `${|}` or a Python dict): a multi-line block.
- Column 0 of a line that holds code: a single line inserted above that line
  (`Context.opens_line`), the shape of HumanEval-infilling holes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

# A line ending in one of these opens a block: an empty line after it asks for a body.
BLOCK_OPENERS = (":", "{", "(", "[", "=>", "->")
# Auto-closed pairs and punctuation that may follow the cursor on an otherwise empty line.
CLOSERS = set(")]}\"'`;,: \t")
# What stands before the `{` of a code block (`) {`, `=> {`, `else {`, `class A extends B {`),
# as opposed to object literals, destructuring, template `${` and Python dicts or sets.
_BRACE_BLOCK = re.compile(r"(\)|=>|\b(else|try|finally|do)|\b(class|interface|enum|struct|namespace|impl|trait)"
                          r"\b[^=(){}]*)\s*$")
# How far `following_lines` looks.
MAX_FOLLOWING_LINES = 50


# Languages by file extension, for the few rules that differ (comment syntax).
LANGUAGES = {
    ".py": "python", ".pyi": "python", ".sh": "shell", ".bash": "shell", ".rb": "ruby", ".pl": "perl", ".r": "r",
    ".R": "r", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".jl": "julia", ".ex": "elixir", ".exs": "elixir",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript", ".ts": "typescript",
    ".tsx": "typescript", ".java": "java", ".kt": "kotlin", ".scala": "scala", ".c": "c", ".h": "c", ".cc": "cpp",
    ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp", ".go": "go", ".rs": "rust", ".swift": "swift", ".dart": "dart",
    ".php": "php",
}
# Languages whose line comments start with `#` (the others known here use `//` and `/* */`).
HASH_COMMENTS = {"python", "shell", "ruby", "perl", "r", "yaml", "toml", "julia", "elixir"}


def language_of(uri: str) -> str:
    """The language of a document by its file extension ('' when unknown)."""
    name = uri.rsplit("/", 1)[-1].split("?", 1)[0]
    dot = name.rfind(".")
    return LANGUAGES.get(name[dot:], "") if dot > 0 else ""


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def indent_width(line: str) -> int:
    """Width of a line's leading whitespace, tabs counted as 4."""
    ws = line[: len(line) - len(line.lstrip(" \t"))]
    return len(ws.expandtabs(4))


@dataclass
class Context:
    text: str
    cursor: int
    line_prefix: str  # from the start of the cursor's line to the cursor
    line_suffix: str  # from the cursor to the end of its line (without the newline)
    mode: str  # "single-line" | "multi-line"
    language: str = ""  # see LANGUAGES; '' when unknown

    @property
    def indent(self) -> str:
        """Leading whitespace of the cursor's line before the cursor."""
        return self.line_prefix[: len(self.line_prefix) - len(self.line_prefix.lstrip())]

    @property
    def opens_line(self) -> bool:
        """Cursor at column 0 of a line with code: a suggestion is whole lines inserted above it."""
        return not self.line_prefix and bool(self.line_suffix.strip())

    @cached_property
    def following_lines(self) -> list[str]:
        """The document's lines after the cursor's line (a few dozen at most), without newlines."""
        end = self.text.find("\n", self.cursor)
        if end < 0:
            return []
        lines = self.text[end + 1 :].split("\n", MAX_FOLLOWING_LINES)[:MAX_FOLLOWING_LINES]
        return [line.rstrip("\r") for line in lines]

    @cached_property
    def previous_line(self) -> str | None:
        """The last non-blank line before the cursor's line."""
        line_start = self.cursor - len(self.line_prefix)
        return _previous_code_line(self.text, line_start)


def analyze(text: str, cursor: int, mode: str = "auto", language: str = "") -> Context | None:
    """Decide what to suggest at `cursor`; None when no suggestion fits (e.g. inside a word)."""
    line_start = text.rfind("\n", 0, cursor) + 1
    line_end = text.find("\n", cursor)
    line_end = len(text) if line_end < 0 else line_end
    line_prefix, line_suffix = text[line_start:cursor], text[cursor:line_end].rstrip("\r")
    if line_prefix and not line_prefix.strip() and line_suffix.strip("".join(CLOSERS)):
        return None  # inside the indentation of a line of code
    ctx = Context(text, cursor, line_prefix, line_suffix, "single-line", language)
    if mode == "auto":
        mode = "multi-line" if _wants_block(ctx) else "single-line"
    ctx.mode = mode
    return ctx


def _wants_block(ctx: Context) -> bool:
    prefix = ctx.line_prefix.rstrip()
    if prefix.endswith("{") and ctx.line_suffix.strip().startswith("}"):
        return bool(_BRACE_BLOCK.search(prefix[:-1]))  # `f() {|}`: the body of an auto-closed block
    if prefix or ctx.line_suffix.strip(" \t)]}"):
        return False  # code on the line: complete the line
    prev = ctx.previous_line
    if prev is None or prev.rstrip().endswith(BLOCK_OPENERS):
        return True
    # An empty body: nothing at the cursor's depth follows, so the block is still to be written.
    nxt = next((line for line in ctx.following_lines if line.strip()), None)
    return nxt is None or indent_width(nxt) < indent_width(ctx.line_prefix)


def _previous_code_line(text: str, line_start: int) -> str | None:
    end = line_start - 1
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        line = text[start:end]
        if line.strip():
            return line
        end = start - 1
    return None
