"""FIM prompts: order, exact token budget, a prefix window that moves with hysteresis, token healing.

SPM (`<fim-prefix><fim-suffix>` suffix `<fim-middle>` prefix) puts the text before the cursor
last, so typing only appends to the prompt and the engine's KV cache stays valid. PSM
(`<fim-prefix>` prefix `<fim-suffix>` suffix `<fim-middle>`) is kept for comparison.

The prefix window's start is remembered per document and only moves, by a large step, when
the prefix overflows its budget: the beginning of the prompt stays put while the user types.
"""

from __future__ import annotations

from dataclasses import dataclass

from santa_lsp.engine.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, Tokenizer
from santa_lsp.errors import InvalidOption

# Characters looked at per budget token before tokenizing (code averages 3-4 chars/token).
CHARS_PER_TOKEN_BOUND = 12
# A fresh window fills this share of the prefix budget, leaving room to type before it moves.
FRESH_FILL = 0.7
# Token healing backs up over at most this many characters and tokens.
MAX_HEAL_CHARS = 24
MAX_HEAL_TOKENS = 4
# Characters of a word that token healing backs up over.
WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$"


@dataclass
class Prompt:
    ids: list[int]
    prefix_start: int  # document offset where the prompt's prefix text begins
    suffix_end: int  # document offset where the prompt's suffix text ends
    prefix_tokens: int
    suffix_tokens: int
    # Token healing: the text removed from the end of the prefix that the output must start with.
    healed: str = ""


class PromptBuilder:
    """Builds prompts for one model; remembers each document's prefix window start."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tok = tokenizer
        self._window: dict[str, int] = {}

    def forget(self, doc: str) -> None:
        self._window.pop(doc, None)

    def build(
        self,
        text: str,
        cursor: int,
        budget: int,
        order: str = "spm",
        suffix_share: float = 0.25,
        doc: str = "",
        heal: bool = True,
    ) -> Prompt:
        """Prompt for a cursor at character offset `cursor` of `text`, within `budget` tokens."""
        budget = max(8, budget - 3)  # the three FIM tokens
        suffix_ids, suffix_end = self._suffix(text, cursor, int(budget * suffix_share))
        prefix_ids, prefix_start = self._prefix(text, cursor, budget - len(suffix_ids), doc)
        healed = ""
        if heal and prefix_ids:
            prefix_ids, healed = self._heal(prefix_ids, text, prefix_start, cursor)
        ids = self.tok.ids
        if order == "psm":
            full = [ids[FIM_PREFIX], *prefix_ids, ids[FIM_SUFFIX], *suffix_ids, ids[FIM_MIDDLE]]
        elif order == "spm":
            full = [ids[FIM_PREFIX], ids[FIM_SUFFIX], *suffix_ids, ids[FIM_MIDDLE], *prefix_ids]
        else:
            raise InvalidOption(f"unknown FIM order {order!r}")
        return Prompt(full, prefix_start, suffix_end, len(prefix_ids), len(suffix_ids), healed)

    def _suffix(self, text: str, cursor: int, budget: int) -> tuple[list[int], int]:
        """Text after the cursor, cut from the right at a line boundary to fit `budget`."""
        if budget <= 0:
            return [], cursor
        end = min(len(text), cursor + budget * CHARS_PER_TOKEN_BOUND)
        while True:
            ids = self.tok.encode(text[cursor:end])
            if len(ids) <= budget:
                return ids, end
            # Too long: cut at the last line break before the share of the text that fits, in
            # proportion (one line at a time re-tokenized kilobytes a hundred times per keystroke).
            guess = cursor + (end - cursor) * budget // (len(ids) + 1)
            cut = text.rfind("\n", cursor, guess)
            end = cut + 1 if cut >= cursor else guess

    def _prefix(self, text: str, cursor: int, budget: int, doc: str) -> tuple[list[int], int]:
        """Text before the cursor from the remembered window start, moved only on overflow."""
        start = self._window.get(doc)
        # A window far above the cursor (the user jumped down a big file) cannot fit: do not
        # tokenize megabytes to find out.
        if start is not None and _valid_start(text, start, cursor) and cursor - start <= budget * CHARS_PER_TOKEN_BOUND:
            ids = self.tok.encode(text[start:cursor])
            # Keep the window while it fits, unless it has shrunk so much that context is lost.
            if len(ids) <= budget and (start == 0 or len(ids) >= budget // 2):
                return ids, start
        start = self._fresh_start(text, cursor, budget)
        self._window[doc] = start
        ids = self.tok.encode(text[start:cursor])
        while len(ids) > budget:  # a single line longer than the budget
            start = cursor - (cursor - start) * budget // (len(ids) + 1)
            ids = self.tok.encode(text[start:cursor])
            self._window[doc] = start
        return ids, start

    def _fresh_start(self, text: str, cursor: int, budget: int) -> int:
        """A line start such that text[start:cursor] fills about FRESH_FILL of the budget."""
        target = max(1, int(budget * FRESH_FILL))
        start = max(0, cursor - budget * CHARS_PER_TOKEN_BOUND)
        if start > 0:
            nl = text.find("\n", start, cursor)
            start = nl + 1 if nl >= 0 else start
        ids = self.tok.encode(text[start:cursor])
        if len(ids) <= target:
            return start
        # Walk line starts forward until it fits: binary search over line starts.
        starts = [start] + [i + 1 for i in _newlines(text, start, cursor)]
        lo, hi = 0, len(starts) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if len(self.tok.encode(text[starts[mid]:cursor])) <= target:
                hi = mid
            else:
                lo = mid + 1
        return starts[lo]

    def _heal(self, prefix_ids: list[int], text: str, start: int, cursor: int) -> tuple[list[int], str]:
        """Back up over the tokens the cursor may sit inside; return (ids, removed text).

        Those are the tokens covering the partial word at the cursor (`pri|`, `self.ba|`), or
        a trailing run of blanks (`    |` merges with the next word in byte-level BPE). The
        engine then constrains its first tokens to reproduce the removed text, so the model
        sees a natural token boundary (`pri|` continues as ` print`, not `pri` + `nt`).
        """
        before = text[start:cursor]
        word = len(before) - len(before.rstrip(WORD_CHARS)) if before[-1:] not in " \t" else 1
        if word == 0 or word > MAX_HEAL_CHARS:
            return prefix_ids, ""
        removed = b""
        for k in range(1, min(MAX_HEAL_TOKENS, len(prefix_ids)) + 1):
            removed = self.tok.token_bytes(prefix_ids[-k]) + removed
            try:
                healed = removed.decode("utf-8")
            except UnicodeDecodeError:
                continue  # inside a multi-byte character: back up further
            if len(healed) > MAX_HEAL_CHARS or not before.endswith(healed):
                break
            if len(healed) >= word:
                return self._heal_leading_space(prefix_ids[:-k], before, healed)
        return prefix_ids, ""

    def _heal_leading_space(self, prefix_ids: list[int], before: str, healed: str) -> tuple[list[int], str]:
        """Byte-level BPE glues a word to the space before it (` print`): when the word is
        cut right after a blank token, back up over that token too."""
        if not prefix_ids or healed[0] in " \t" or not before[: len(before) - len(healed)].endswith(" "):
            return prefix_ids, healed
        blank = self.tok.decode(prefix_ids[-1:])
        if blank.strip() or len(blank) + len(healed) > MAX_HEAL_CHARS:
            return prefix_ids, healed
        return prefix_ids[:-1], blank + healed


def _valid_start(text: str, start: int, cursor: int) -> bool:
    return 0 <= start <= cursor and (start == 0 or text[start - 1] == "\n")


def _newlines(text: str, lo: int, hi: int):
    i = text.find("\n", lo, hi)
    while i >= 0:
        yield i
        i = text.find("\n", i + 1, hi)
