"""Typing-ahead cache: answer at once while the user types what the last suggestion says.

After a suggestion `S` at cursor `c`, the user typing `S[:k]` leaves the document equal to
the old one with `S[:k]` inserted at `c`. For such a request the answer is `S[k:]`, without
running the model. Entries remember the text around their cursor (a window on each side,
as wide as any prompt looks), so a request matches an entry when the text before the
entry's cursor and the text after the new cursor are unchanged and what lies between is a
proper beginning of the suggestion. Backspacing shrinks that middle part, re-typing grows it
again: both keep hitting. A small LRU holds recent entries, so backing up past one cursor
finds an older entry for an earlier one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

from santa_lsp.stats import Stats

# Entries kept (LRU).
CAPACITY = 32
# Characters compared on each side of an entry's cursor.
WINDOW_CHARS = 8192


@dataclass(frozen=True)
class Hit:
    text: str  # what remains of the suggestion after what was typed
    replace_len: int  # characters after the cursor the remainder replaces
    mode: str
    typed: int  # characters of the suggestion already typed


@dataclass
class _Entry:
    doc: str
    options: Hashable  # the options the suggestion was made with
    cursor: int
    before: str  # text[cursor - WINDOW_CHARS : cursor]
    after: str  # text[cursor : cursor + WINDOW_CHARS]
    text: str
    replace_len: int
    mode: str


class TypeaheadCache:
    def __init__(self, capacity: int = CAPACITY, window: int = WINDOW_CHARS, stats: Stats | None = None) -> None:
        """`stats`: where hits and misses are counted (the service's registry)."""
        self.capacity = max(1, capacity)
        self.window = window
        self.stats = stats if stats is not None else Stats()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hits(self) -> int:
        return self.stats["typeahead_hits"]

    @property
    def misses(self) -> int:
        return self.stats["typeahead_misses"]

    @property
    def hit_rate(self) -> float:
        return self.stats.typeahead_hit_rate()

    def lookup(self, doc: str, text: str, cursor: int, options: Hashable) -> Hit | None:
        """The rest of a cached suggestion the user is typing along, or None (counted)."""
        for entry_id in reversed(self._entries):
            entry = self._entries[entry_id]
            if entry.doc != doc or entry.options != options or cursor < entry.cursor:
                continue
            typed = text[entry.cursor : cursor]
            rest = entry.text[len(typed) :]
            if not entry.text.startswith(typed) or not rest.strip():
                continue
            if text[max(0, entry.cursor - self.window) : entry.cursor] != entry.before:
                continue
            if text[cursor : cursor + self.window] != entry.after:
                continue
            self._entries.move_to_end(entry_id)
            self.stats.add("typeahead_hits")
            return Hit(rest, entry.replace_len, entry.mode, len(typed))
        self.stats.add("typeahead_misses")
        return None

    def store(self, doc: str, text: str, cursor: int, options: Hashable, suggestion: str, replace_len: int,
              mode: str) -> None:
        """Remember a suggestion shown at `cursor` of `text` (empty ones teach nothing)."""
        if not suggestion.strip():
            return
        before = text[max(0, cursor - self.window) : cursor]
        after = text[cursor : cursor + self.window]
        for entry_id, entry in list(self._entries.items()):  # the same state answered again
            if entry.doc == doc and entry.cursor == cursor and entry.before == before and entry.after == after:
                del self._entries[entry_id]
        self._entries[self._next_id] = _Entry(doc, options, cursor, before, after, suggestion, replace_len, mode)
        self._next_id += 1
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def forget(self, doc: str) -> None:
        for entry_id in [i for i, e in self._entries.items() if e.doc == doc]:
            del self._entries[entry_id]

    def clear(self) -> None:
        self._entries.clear()
