"""Cursor -> the shape of the suggestion to ask for: none, a single line, or a block."""

from __future__ import annotations

from dataclasses import dataclass

# A line ending in one of these opens a block: an empty line after it asks for a body.
BLOCK_OPENERS = (":", "{", "(", "[", "=>", "->")
# What may follow the cursor on its line and still allow a suggestion (auto-closed pairs).
CLOSERS = set(")]}\"'`;,: \t")


@dataclass
class Context:
    text: str
    cursor: int
    line_prefix: str  # from the start of the cursor's line to the cursor
    line_suffix: str  # from the cursor to the end of its line (without the newline)
    mode: str  # "single-line" | "multi-line"

    @property
    def indent(self) -> str:
        """Indentation of the block the cursor is in."""
        return self.line_prefix[: len(self.line_prefix) - len(self.line_prefix.lstrip())]


def analyze(text: str, cursor: int, mode: str = "auto") -> Context | None:
    """Decide what to suggest at `cursor`; None when no suggestion fits (e.g. inside a word)."""
    line_start = text.rfind("\n", 0, cursor) + 1
    line_end = text.find("\n", cursor)
    line_end = len(text) if line_end < 0 else line_end
    line_prefix, line_suffix = text[line_start:cursor], text[cursor:line_end].rstrip("\r")
    if line_suffix and (line_suffix[0].isalnum() or line_suffix[0] == "_"):
        return None  # in the middle of a word: any insertion would split it
    if mode == "auto":
        mode = "multi-line" if _wants_block(text, line_start, line_prefix, line_suffix) else "single-line"
    return Context(text, cursor, line_prefix, line_suffix, mode)


def _wants_block(text: str, line_start: int, line_prefix: str, line_suffix: str) -> bool:
    if line_prefix.strip() or line_suffix.strip(" \t)]}"):
        return False  # code on the line: complete the line
    prev = _previous_code_line(text, line_start)
    return prev is None or prev.rstrip().endswith(BLOCK_OPENERS)


def _previous_code_line(text: str, line_start: int) -> str | None:
    end = line_start - 1
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        line = text[start:end]
        if line.strip():
            return line
        end = start - 1
    return None
