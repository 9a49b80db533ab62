"""positions.py: LSP positions <-> character offsets, in each encoding (pure functions)."""

from __future__ import annotations

import pytest

from santa_lsp.lsp.positions import UTF8, UTF16, UTF32, apply_change, offset_at, position_at


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
def test_round_trip_every_offset(encoding):
    text = "a😀b\r\n名é\rz\n"
    for offset in range(len(text) + 1):
        line, character = position_at(text, offset, encoding)
        back = offset_at(text, line, character, encoding)
        # the offset between "\r" and "\n" is no position of its own
        assert back == offset or text[offset - 1 : offset + 1] == "\r\n"


def test_invalid_positions():
    text = "a😀b\nxyz"
    assert offset_at(text, 0, 2, UTF16) is None  # between the surrogates of 😀
    assert offset_at(text, 0, 3, UTF8) is None  # inside 😀's four bytes
    assert offset_at(text, 0, 3, UTF16) == 2
    assert offset_at(text, 2, 0, UTF16) is None  # past the last line
    assert offset_at(text, 1, 99, UTF16) == len(text)  # past the line's end: its end (LSP)
    assert offset_at("a\n", 1, 0) == 2  # the empty last line exists


def test_apply_change():
    text = "a😀b\fc\nxyz"
    assert apply_change(text, (0, 3), (0, 4), "B") == "a😀B\fc\nxyz"  # UTF-16: 😀 is two units
    assert apply_change(text, (1, 0), (1, 0), ">") == "a😀b\fc\n>xyz"  # \f does not end a line
    assert apply_change(text, (0, 0), (9, 0), "") == ""  # past the end: the end
