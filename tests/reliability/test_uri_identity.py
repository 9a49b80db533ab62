"""Issue 14, item 7: URIs that differ only in %-encoding (`c%41.py`, `cA.py`) are one document.

pygls' workspace keyed documents by `unquote(uri)` while the scheduler and the completion
service used the URI as sent: the two spellings shared one text but had two prompt windows,
two typing-ahead caches and two "newest request wins" queues, and closing one spelling left
the other's cache behind. Every part now uses the same key (`server.doc_key`).
"""

from __future__ import annotations

PLAIN, ENCODED = "file:///uri-test/cA.py", "file:///uri-test/c%41.py"


def suggestion(client, uri, line, character):
    reply = client.wait(client.inline(uri, line, character), 30)
    assert reply is not None and "result" in reply, reply
    items = reply["result"]["items"]
    return items[0]["insertText"] if items else ""


def test_percent_encoded_spellings_are_one_document(shared_server):
    client = shared_server
    client.open(PLAIN, "import os\n\nprint(")
    first = suggestion(client, PLAIN, 2, 6)
    assert first, "the tiny model suggests after an opener"
    hits = client.status()["stats"]["typeaheadHits"]
    # Type the suggestion's first character through the other spelling: the same document,
    # so the suggestion is still there (a typing-ahead hit), and the edit applied to the text.
    client.change(ENCODED, 2, 2, 6, first[0])
    second = suggestion(client, ENCODED, 2, 7)
    assert client.status()["stats"]["typeaheadHits"] == hits + 1
    assert second == first[1:] or first.startswith(first[0] + second)
    # Closing one spelling closes the document.
    client.notify("textDocument/didClose", {"textDocument": {"uri": ENCODED}})
    assert suggestion(client, PLAIN, 2, 7) == ""
