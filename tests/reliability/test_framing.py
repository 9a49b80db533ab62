"""Issue 14, items 1-2: hostile framing on stdio. Before: one `Content-Length: 10^18` header
killed the server (MemoryError in pygls' reader); a frame without a length, a length too small
or negative, stray bytes or LF-only headers left it alive and deaf. Now the reader skips what
is not a frame (and says so on stderr) and answers the next request."""

from __future__ import annotations

import json
import time

import pytest
from hostile_client import bare_session, frame, raw_frame, start_bare

from santa_lsp.lsp.framing import MAX_BODY, Broken, Framer, Message

STATUS = {"command": "santa.status", "arguments": []}


def status_request(msg_id: str) -> dict:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "workspace/executeCommand", "params": STATUS}


def body(msg: dict) -> bytes:
    return json.dumps(msg).encode()


# name -> (bytes that precede a well-framed request, what stderr must mention)
BAD_FRAMES = {
    "length 10^18": (b"Content-Length: 1000000000000000000\r\n\r\n", "over the limit"),
    "length 10^11": (b"Content-Length: 100000000000\r\n\r\n", "over the limit"),
    "length 10^20": (b"Content-Length: 100000000000000000000\r\n\r\n", "over the limit"),
    "no Content-Length": (b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + body(status_request("lost")),
                          "without Content-Length"),
    "length too small": (b"Content-Length: 10\r\n\r\n" + body(status_request("cut")), "skipped"),
    "negative length": (b"Content-Length: -5\r\n\r\n" + body(status_request("neg")), "is not a length"),
    "three stray bytes": (b"abc", "skipped 3 bytes"),
    "junk line": (b"\x00\xff garbage\n", "skipped"),
    "half a header": (b"content-length: 7", "skipped"),
}


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    yield from bare_session(tmp_path_factory.mktemp("framing") / "stderr.log", shutdown=True)


@pytest.fixture
def fresh(tmp_path):
    """A server of its own: its stderr log is not rate-limited by earlier tests."""
    client = start_bare(tmp_path / "stderr.log")
    client.log = tmp_path / "stderr.log"
    yield client
    try:
        assert client.proc.poll() is None, "the server died"
    finally:
        client.close()


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_resynchronises_after_a_bad_frame(fresh, name):
    bare = fresh
    junk, mention = BAD_FRAMES[name]
    before = bare.log.read_text(errors="replace")
    msg_id = f"after-{name}"
    assert bare.write(junk + frame(status_request(msg_id)))
    reply = bare.wait(msg_id, 15)
    assert reply is not None and reply.get("result", {}).get("state") == "disabled", (name, reply)
    assert bare.proc.poll() is None
    time.sleep(0.1)
    logged = bare.log.read_text(errors="replace")[len(before):]
    assert mention in logged, logged[-2000:]


def test_lf_only_headers_are_read(bare):
    data = raw_frame(body(status_request("lf"))).replace(b"\r\n", b"\n")
    assert bare.write(data)
    reply = bare.wait("lf", 15)
    assert reply is not None and "result" in reply


def test_too_large_length_with_a_frame_after_it(bare):
    """The ambiguous case: the body ends at the next header (a raw line break with
    `Content-Length:` cannot be inside JSON), so both requests are answered."""
    first = body(status_request("long-1"))
    data = b"Content-Length: %d\r\n\r\n%s" % (len(first) + 500, first) + frame(status_request("long-2"))
    assert bare.write(data)
    assert bare.wait("long-1", 15) is not None
    assert bare.wait("long-2", 15) is not None


def test_too_large_length_alone(bare):
    """Nothing follows: the body already holds one complete JSON value, so it is handled."""
    first = body(status_request("alone"))
    assert bare.write(b"Content-Length: %d\r\n\r\n%s" % (len(first) + 500, first))
    assert bare.wait("alone", 15) is not None


def test_too_small_length_answers_a_parse_error_with_the_id(bare):
    whole = body(status_request("short"))
    assert bare.write(b"Content-Length: %d\r\n\r\n%s" % (len(whole) - 20, whole) + frame(status_request("next")))
    reply = bare.wait("short", 15)
    assert reply is not None and reply["error"]["code"] == -32700, reply
    assert bare.wait("next", 15) is not None


def test_a_flood_of_junk_is_bounded(bare):
    """A megabyte without any header end: dropped in pieces, the buffer stays small, and the
    stderr log gets a few lines, not one per piece."""
    before = bare.log.read_text(errors="replace")
    assert bare.write(b"x" * (1 << 20))
    assert bare.write(frame(status_request("after-flood")))
    assert bare.wait("after-flood", 30) is not None
    time.sleep(0.1)
    assert bare.log.read_text(errors="replace")[len(before):].count("\n") < 20


# -- the framer itself (what the server runs), case by case --------------------------------
def feed_all(data: bytes, step: int | None = None) -> tuple[list, list]:
    reports: list = []
    framer = Framer(lambda kind, text: reports.append((kind, text)))
    out: list = []
    chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        out += framer.feed(chunk)
    assert framer.buffered < 1024
    return out, reports


@pytest.mark.parametrize("step", [None, 1, 7])
def test_framer_byte_by_byte(step):
    good = frame(status_request("g"))
    data = b"".join(junk for junk, _ in BAD_FRAMES.values()) + good + good.replace(b"\r\n", b"\n")
    out, reports = feed_all(data, step)
    messages = [m.value for m in out if isinstance(m, Message)]
    assert messages.count(status_request("g")) == 2
    assert reports


def test_framer_limits():
    out, reports = feed_all(b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1) + frame({"a": 1}))
    assert [m.value for m in out] == [{"a": 1}]
    assert "over the limit" in reports[0][1]
    out, _ = feed_all(raw_frame(b"[" * 200_000 + b"]" * 200_000))
    assert isinstance(out[0], Broken)
    out, _ = feed_all(raw_frame(b'{"jsonrpc": "2.0", "id": 7, "method": "x", "params": {'))
    assert isinstance(out[0], Broken) and out[0].request_id == 7


# -- properties: any junk, then a good frame ------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reliability_helpers import FUZZ_EXAMPLES  # noqa: E402

JUNK = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n", b"\n\n", b"{", b"}",
                                                                   b"Content-Type: x\r\n", b"X: y\n", b"\xff\xfe"])),
                max_size=12).map(b"".join).filter(lambda b: b"content-length" not in b.lower())


@settings(max_examples=FUZZ_EXAMPLES * 5, deadline=None, derandomize=FUZZ_EXAMPLES <= 100,
          suppress_health_check=[HealthCheck.too_slow])
@given(junk=JUNK, step=st.integers(1, 64))
def test_framer_recovers_the_frame_after_any_junk(junk, step):
    """Junk without a Content-Length header of its own never costs the frame after it, and
    nothing stays buffered."""
    out, _ = feed_all(junk + frame(status_request("p")), step)
    assert status_request("p") in [m.value for m in out if isinstance(m, Message)]


@settings(max_examples=FUZZ_EXAMPLES * 5, deadline=None, derandomize=FUZZ_EXAMPLES <= 100)
@given(data=st.binary(max_size=4000), step=st.integers(1, 512))
def test_framer_is_total(data, step):
    feed_all(data + b"\r\n\r\n", step)  # never raises; buffer bounded (checked in feed_all)
