"""items.py: suggestions mapped back to the document, and the items that carry them (pure functions)."""

from __future__ import annotations

from lsprotocol import types

from santa_lsp.lsp.items import completion_list, target
from santa_lsp.lsp.positions import UTF16


def pos(line: int, character: int) -> types.Position:
    return types.Position(line, character)


def test_replacing_an_auto_closed_bracket():
    doc = "x = f()\n"
    t = target(doc, 6, None, UTF16)
    s = t.suggestion("a, b)", 1, UTF16)  # the model's ")" overwrites the one after the cursor
    assert s.range == types.Range(pos(0, 6), pos(0, 7)) and s.text == "a, b)"


def test_selected_menu_item():
    doc = "😀 = os.pa\n"
    selected = types.SelectedCompletionInfo(range=types.Range(pos(0, 8), pos(0, 10)), text="path")
    t = target(doc, len("😀 = os.pa"), selected, UTF16)  # offsets count code points, ranges UTF-16 units
    assert t.text == "😀 = os.path\n" and t.text_cursor == len("😀 = os.path")
    s = t.suggestion(".join(a)", 0, UTF16)
    assert s.text == "path.join(a)" and s.range == types.Range(pos(0, 8), pos(0, 10))


def test_selection_not_around_the_cursor_is_ignored():
    selected = types.SelectedCompletionInfo(range=types.Range(pos(0, 0), pos(0, 1)), text="zzz")
    t = target("abc", 3, selected, UTF16)
    assert t.text == "abc" and t.lead == ""


def test_completion_item_starts_with_the_partial_word():
    doc = "value = os.pa"
    s = target(doc, len(doc), None, UTF16).suggestion("th.join(a)\nmore", 0, UTF16)
    (item,) = completion_list(s).items
    assert item.text_edit.range == types.Range(pos(0, 11), pos(0, 13))
    assert item.text_edit.new_text == "path.join(a)\nmore" and item.label == "path.join(a) …"
