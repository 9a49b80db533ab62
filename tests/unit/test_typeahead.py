"""Typing-ahead cache: typing along a suggestion, backspace, re-typing, edits elsewhere, LRU."""

from __future__ import annotations

from santa_lsp.typeahead import TypeaheadCache

DOC = "def area(w, h):\n    \n\nprint(area(2, 3))\n"
CURSOR = DOC.index("    \n") + 4
SUGGESTION = "return w * h"


def typed(chars: str, text: str = DOC, cursor: int = CURSOR) -> tuple[str, int]:
    return text[:cursor] + chars + text[cursor:], cursor + len(chars)


def cache_with_entry() -> TypeaheadCache:
    cache = TypeaheadCache()
    cache.store("a.py", DOC, CURSOR, "opts", SUGGESTION, 0, "multi-line")
    return cache


def test_typing_along_the_suggestion_answers_the_rest():
    cache = cache_with_entry()
    for n in range(len(SUGGESTION)):
        text, cursor = typed(SUGGESTION[:n])
        hit = cache.lookup("a.py", text, cursor, "opts")
        assert hit is not None and hit.text == SUGGESTION[n:] and hit.typed == n
    assert cache.hits == len(SUGGESTION) and cache.misses == 0


def test_typing_something_else_misses():
    cache = cache_with_entry()
    assert cache.lookup("a.py", *typed("retu"), "opts") is not None
    assert cache.lookup("a.py", *typed("retx"), "opts") is None
    assert cache.lookup("a.py", *typed(SUGGESTION), "opts") is None  # fully typed: nothing left
    assert (cache.hits, cache.misses) == (1, 2)
    assert cache.hit_rate == 1 / 3


def test_backspace_and_retyping_keep_hitting():
    cache = cache_with_entry()
    states = ["ret", "re", "r", "", "r", "re", "ret", "retu"]
    for chars in states:
        hit = cache.lookup("a.py", *typed(chars), "opts")
        assert hit is not None and hit.text == SUGGESTION[len(chars):]


def test_backspace_past_the_cursor_finds_an_older_entry():
    cache = TypeaheadCache()
    text, cursor = typed("r")
    cache.store("a.py", DOC, CURSOR, "opts", SUGGESTION, 0, "multi-line")
    cache.store("a.py", text, cursor, "opts", "eturn w * h", 0, "multi-line")  # answered at the next keystroke
    assert cache.lookup("a.py", DOC, CURSOR, "opts").text == SUGGESTION
    # Deleting a character before the older cursor leaves no usable entry.
    shorter = DOC[: CURSOR - 1] + DOC[CURSOR:]
    assert cache.lookup("a.py", shorter, CURSOR - 1, "opts") is None


def test_changes_around_the_cursor_other_documents_and_options_miss():
    cache = cache_with_entry()
    text, cursor = typed("ret")
    assert cache.lookup("b.py", text, cursor, "opts") is None
    assert cache.lookup("a.py", text, cursor, "other options") is None
    before_changed = "# new\n" + text
    assert cache.lookup("a.py", before_changed, cursor + 6, "opts") is None
    after_changed = text[:cursor] + text[cursor:].replace("area(2, 3)", "area(4, 5)")
    assert cache.lookup("a.py", after_changed, cursor, "opts") is None
    assert cache.lookup("a.py", text, cursor, "opts") is not None


def test_replace_range_and_mode_carry_over():
    cache = TypeaheadCache()
    text = "print(|)\n".replace("|", "")
    cache.store("a.py", text, 6, "o", '"hi", end="")', 1, "single-line")
    hit = cache.lookup("a.py", text[:6] + '"h' + text[6:], 8, "o")
    assert (hit.text, hit.replace_len, hit.mode) == ('i", end="")', 1, "single-line")


def test_lru_is_bounded_and_forget_drops_a_document():
    cache = TypeaheadCache(capacity=3)
    for i in range(5):
        text = f"x{i} = \n"
        cache.store("a.py", text, len(text) - 1, "o", f"value_{i}", 0, "single-line")
    assert len(cache) == 3
    assert cache.lookup("a.py", "x0 = \n", 5, "o") is None
    assert cache.lookup("a.py", "x4 = v\n", 6, "o").text == "alue_4"
    cache.store("b.py", "y = \n", 4, "o", "other", 0, "single-line")
    cache.forget("a.py")
    assert len(cache) == 1
    cache.store("b.py", "y = \n", 4, "o", "   ", 0, "single-line")  # blank suggestions are not kept
    assert len(cache) == 1
