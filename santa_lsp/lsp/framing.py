"""The LSP base protocol's framing (`Content-Length: N\\r\\n\\r\\n` + N bytes of JSON), read
without trusting the peer.

pygls 2.1.1's readers (`pygls.io_.run_async`, used for stdio and TCP) die or go deaf on bad
framing: `Content-Length: 10^18` is passed to `read()` (MemoryError / OverflowError, the
server exits); a frame without `Content-Length`, a negative or too small length, stray bytes
before a header or LF-only line ends leave its state machine waiting for a header that never
comes, and no later message is read. `Framer` replaces that reader's parsing:

- Headers: a block of lines ending with an empty line (CRLF or LF); header names in any case;
  unknown headers ignored; the last `Content-Length` of a block counts.
- Resynchronisation: whatever precedes a header block that is not a header line (stray bytes,
  the rest of a mis-framed body) is skipped up to the next `Content-Length:` header, and what
  was skipped is reported (count and a short preview).
- Bounds: a length over `MAX_BODY` bytes, or not a decimal number, drops that header block;
  the bytes after it are skipped up to the next header. Header junk without a blank line is
  kept to `MAX_HEADER` bytes, then dropped.
- A length too small: the body is cut short, fails to parse (answered as a parse error, with
  the request's id when it can be read), and the rest is skipped up to the next header.
- A length too large is ambiguous (the peer may still be sending): the body ends early when
  (a) a `Content-Length: N` line with a raw line break appears inside it, which valid JSON
  cannot contain, or (b) what came so far is already one complete JSON value. Otherwise the
  reader waits for the announced bytes, as the protocol requires; the next frames then arrive
  inside the "body" and (a) ends it as soon as one of their headers is complete.

Bodies are decoded as UTF-8 with invalid bytes replaced by U+FFFD (reported), then parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_BODY = 256 * 1024 * 1024  # a 10 MB file is about 11 MB of JSON; escapes can multiply it
MAX_HEADER = 64 * 1024  # header bytes without the blank line that ends them

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)  # the value runs to the line's end
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:[^\r\n]*")  # `Name: value` (RFC 7230 token chars)
# A complete Content-Length line: JSON strings cannot hold a raw line break, so a body that
# contains one is not one message.
_HEADER_IN_BODY = re.compile(rb"content-length[ \t]*:[ \t]*\d+[ \t]*\r?\n", re.IGNORECASE)
# A request's id among the first members of a broken body: `{"jsonrpc": "2.0", "id": 7, ...`
_SCALAR = rb'(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)'
_LEADING_ID = re.compile(rb'\A\s*\{\s*(?:"(?:[^"\\]|\\.)*"\s*:\s*' + _SCALAR + rb'\s*,\s*){0,8}?"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,200}")\s*[,}]')

Report = Callable[[str, str], None]  # (kind, text): kinds are a fixed set, for rate limiting


@dataclass
class Message:
    value: Any  # the parsed JSON


@dataclass
class Broken:
    error: str  # why the body is not a message
    request_id: int | str | None  # the id it seems to carry, for the parse-error answer


def preview(data: bytes, limit: int = 60) -> str:
    text = repr(bytes(data[:limit]))
    return text + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def leading_id(body: bytes) -> int | str | None:
    """The id of a request whose body does not parse, if its first members show one."""
    m = _LEADING_ID.match(body[:4096])
    if m is None:
        return None
    try:
        value = json.loads(m.group(1))
    except ValueError:
        return None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def parse(body: bytes, report: Report) -> Message | Broken:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        report("utf8", f"invalid UTF-8 in a message ({err.reason} at byte {err.start}): replaced by U+FFFD")
        text = body.decode("utf-8", errors="replace")
    try:
        return Message(json.loads(text))
    except RecursionError:
        return Broken("nested too deeply", leading_id(body))
    except ValueError as err:  # JSONDecodeError, and ints past the digit limit
        return Broken(str(err)[:200], leading_id(body))


class Framer:
    """Bytes in, messages out: `feed(data)` returns the messages (or broken bodies) completed."""

    def __init__(self, report: Report | None = None, max_body: int = MAX_BODY, max_header: int = MAX_HEADER) -> None:
        self._report: Report = report or (lambda kind, text: None)
        self.max_body = max_body
        self.max_header = max_header
        self._buf = bytearray()
        self._pos = 0  # start of the unread bytes in _buf
        self._need: int | None = None  # the announced length of the body being read
        self._scan = 0  # where the search for a header inside that body resumes
        self.skipped_bytes = 0
        self.frames = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[Message | Broken]:
        self._buf += data
        out: list[Message | Broken] = []
        while self._step(out):
            pass
        if self._pos:
            del self._buf[:self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0
        return out

    def _skip(self, end: int, why: str, kind: str = "skip") -> None:
        skipped = self._buf[self._pos:end]
        self._pos = end
        if skipped.strip():
            self.skipped_bytes += len(skipped)
            self._report(kind, f"skipped {len(skipped)} bytes ({why}): {preview(skipped)}")

    def _step(self, out: list[Message | Broken]) -> bool:
        if self._need is None:
            return self._header()
        return self._body(out)

    def _header(self) -> bool:
        buf, pos = self._buf, self._pos
        end = _HEADER_END.search(buf, pos)
        if end is None:
            if len(buf) - pos > self.max_header:
                # Keep a Content-Length line that may still be completing, drop the rest.
                last = None
                for last in _CONTENT_LENGTH.finditer(buf, max(pos, len(buf) - 256)):
                    pass
                keep = last.start() if last is not None else len(buf) - 32
                self._skip(keep, f"no header end within {self.max_header} bytes", "skip-flood")
                return True
            return False
        block = bytes(buf[pos:end.start()])
        lengths = list(_CONTENT_LENGTH.finditer(block))
        if not lengths:
            self._skip(end.end(), "a header block without Content-Length", "skip-no-length")
            return True
        last = lengths[-1]
        # What precedes the Content-Length header must be header lines; anything else is junk
        # (stray bytes, the rest of a mis-framed body) and is reported.
        line_start = block.rfind(b"\n", 0, last.start()) + 1
        junk = [ln for ln in re.split(rb"\r?\n", block[:line_start]) if ln.strip() and not _HEADER_LINE.fullmatch(ln)]
        if junk or line_start != last.start():
            self._skip(pos + last.start(), "not a header")
            return True  # the header block starts here now
        line_end = block.find(b"\n", last.end())
        value = block[last.end():None if line_end < 0 else line_end].strip()
        if not value.isdigit() or not value.isascii():
            self._skip(end.end(), f"Content-Length {preview(value, 30)} is not a length", "skip-bad-length")
            return True
        if len(value) > 15 or int(value) > self.max_body:
            self._skip(end.end(), f"Content-Length {int(value) if len(value) < 40 else value[:40]!r} is over "
                                        f"the limit of {self.max_body} bytes; its body is skipped up to the next header",
                       "skip-too-large")
            return True
        self._pos = end.end()
        self._need = int(value)
        self._scan = self._pos
        return True

    def _body(self, out: list[Message | Broken]) -> bool:
        buf, pos, need = self._buf, self._pos, self._need
        assert need is not None
        if len(buf) - pos >= need:
            body = bytes(buf[pos:pos + need])
            item = parse(body, self._report)
            inner = _HEADER_IN_BODY.search(body) if isinstance(item, Broken) else None
            if inner is not None:  # the length was wrong: another frame starts inside this body
                return self._cut(out, pos + inner.start(), need)
            self._finish(out, item, pos + need)
            return True
        # Incomplete: end it early if it cannot be one message (see the module's docstring).
        inner = _HEADER_IN_BODY.search(buf, max(pos, self._scan))
        if inner is not None:
            return self._cut(out, inner.start(), need)
        self._scan = max(pos, len(buf) - 64)
        last = len(buf) - 1
        while last >= pos and buf[last] in b" \t\r\n":
            last -= 1
        if last > pos and buf[last] in b"}]":
            tail = bytes(buf[pos:last + 1])
            item = parse(tail, lambda kind, text: None)
            if isinstance(item, Message):
                self._report("length", f"Content-Length {need} but the message ended after {len(tail)} bytes")
                self._finish(out, item, len(buf))
                return True
        return False

    def _cut(self, out: list[Message | Broken], at: int, need: int) -> bool:
        """End the current body at `at` (where the next header starts) instead of its announced length."""
        body = bytes(self._buf[self._pos:at])
        self._report("length", f"Content-Length {need} but another header came after {len(body)} bytes")
        item = parse(body, self._report) if body.strip() else None
        if isinstance(item, Message):
            self._finish(out, item, at)
        else:
            self._need = None
            self._skip(at, "a body cut short by the next header", "skip-cut")
        return True

    def _finish(self, out: list[Message | Broken], item: Message | Broken, end: int) -> None:
        out.append(item)
        self.frames += 1
        self._pos = end
        self._need = None

