"""Suggestions in LSP terms: where they start and end in the document, and the items that carry them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsprotocol import types

from santa_lsp.lsp import positions
from santa_lsp.suggestion import Suggestion


@dataclass
class Placement:
    """The pipeline's suggestion placed in the document, in the client's position encoding."""

    suggestion: Suggestion  # in document offsets: `text` goes at `cursor` (the selected item's start)
    range: types.Range  # what it replaces: from where it starts to the end of what it overwrites
    word: str  # the partial word before it (completion clients filter by it)
    word_start: types.Position

    @property
    def text(self) -> str:
        return self.suggestion.text


_WORD_BEFORE = re.compile(r"[\w$]*\Z")


@dataclass
class Target:
    """What the model completes, and how its answer maps back to the document."""

    document: str
    cursor: int  # in `document`
    text: str  # the document, or the document with the completion menu's selected item accepted
    text_cursor: int  # in `text`
    lead: str  # the selected item's text: the suggestion starts with it
    start: int  # where the suggestion starts in the document (the cursor, or the item's start)
    resume: int  # where the document resumes after `text_cursor`

    def suggestion(self, completion: str, replaced: int, encoding: str) -> Placement:
        """`completion` inserted at `text_cursor`, replacing `replaced` characters after it."""
        doc = self.document

        def position(offset: int) -> types.Position:
            return types.Position(*positions.position_at(doc, offset, encoding))

        end = max(self.cursor, self.resume + replaced)
        word = word_before(doc, self.start)
        return Placement(Suggestion(self.lead + completion, end - self.start, self.start),
                         types.Range(position(self.start), position(end)), word, position(self.start - len(word)))


def target(document: str, cursor: int, selected: types.SelectedCompletionInfo | None, encoding: str) -> Target:
    """Complete at the cursor, or, with an item selected in the client's completion menu (LSP
    3.18), as if that item were accepted: the suggestion then starts with the item's text."""
    if selected is not None:
        r = selected.range
        lo = positions.offset_at(document, r.start.line, r.start.character, encoding)
        hi = positions.offset_at(document, r.end.line, r.end.character, encoding)
        if lo is not None and hi is not None and lo <= cursor <= hi:
            return Target(document, cursor, document[:lo] + selected.text + document[hi:], lo + len(selected.text),
                          selected.text, lo, hi)
    return Target(document, cursor, document, cursor, "", cursor, cursor)


def word_before(text: str, offset: int) -> str:
    """The partial identifier ending at `offset` (on its line)."""
    return _WORD_BEFORE.search(text, text.rfind("\n", 0, offset) + 1, offset).group()


ACCEPTED_COMMAND = "santa.accepted"


def inline_completion_list(suggestion: Placement | None, item_id: int | None = None) -> types.InlineCompletionList:
    """`item_id`: the client runs `santa.accepted <item_id>` after inserting the item (local
    acceptance counts, see status.Feedback)."""
    if suggestion is None:
        return types.InlineCompletionList(items=[])
    command = None if item_id is None else types.Command(title="santa-lsp: accepted", command=ACCEPTED_COMMAND,
                                                         arguments=[item_id])
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=suggestion.text,
                                                                        range=suggestion.range, command=command)])


def completion_list(suggestion: Placement | None) -> types.CompletionList:
    """The suggestion as one completion item, for clients without inline completion."""
    if suggestion is None:
        return types.CompletionList(is_incomplete=True, items=[])
    # The item covers the partial word before the cursor too: completion clients filter items
    # by that word, and an item not starting with it would be hidden. Its edit must stay on one
    # line, so a replacement reaching into later lines shrinks to an insertion.
    end = suggestion.range.end if suggestion.range.end.line == suggestion.range.start.line else suggestion.range.start
    new_text = suggestion.word + suggestion.text
    first_line = new_text.strip().split("\n", 1)[0]
    item = types.CompletionItem(
        label=first_line + (" …" if "\n" in new_text.strip() else ""),
        kind=types.CompletionItemKind.Snippet,
        detail="santa-lsp",
        documentation=suggestion.text,
        filter_text=new_text,
        sort_text="0",
        preselect=True,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(suggestion.word_start, end), new_text=new_text),
    )
    return types.CompletionList(is_incomplete=True, items=[item])
