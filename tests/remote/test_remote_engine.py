"""The remote backend against a fake OpenAI-compatible server: streaming, stop rules, healing,
cancellation, timeouts, retries, and the errors a user can act on."""

from __future__ import annotations

import argparse
import logging
import threading
import time

import pytest
from fake_openai import FakeOpenAI, Script

from santa_lsp.config import Options
from santa_lsp.engine import GenerationParams, load_engine
from santa_lsp.engine.remote import RemoteEngine, RemoteError, connect, normalize_endpoint
from santa_lsp.engine.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, Tokenizer
from santa_lsp.errors import ModelLoadError
from santa_lsp.service import CompletionService


@pytest.fixture
def tok(tiny_tokenizer) -> Tokenizer:
    return Tokenizer(tiny_tokenizer)


def engine(server: FakeOpenAI, tok: Tokenizer, **kw) -> RemoteEngine:
    kw.setdefault("key", "")
    return RemoteEngine(server.url, server.script.models[0], tok, 512, **kw)


def spm(tok: Tokenizer, suffix: str, prefix: str) -> list[int]:
    i = tok.ids
    return [i[FIM_PREFIX], i[FIM_SUFFIX], *tok.encode(suffix), i[FIM_MIDDLE], *tok.encode(prefix)]


def psm(tok: Tokenizer, prefix: str, suffix: str) -> list[int]:
    i = tok.ids
    return [i[FIM_PREFIX], *tok.encode(prefix), i[FIM_SUFFIX], *tok.encode(suffix), i[FIM_MIDDLE]]


def test_streams_the_answer_and_sends_token_ids(fake, tok):
    prompt = spm(tok, "\n", "def add(a, b):\n    ")
    result = engine(fake, tok).generate(prompt, GenerationParams(max_new_tokens=8, temperature=0.0))
    assert tok.decode(result.ids) == "hello world\nmore text"
    assert result.stop_reason == "length" and result.prompt_tokens == len(prompt)
    (request,) = fake.completions()
    body = request["body"]
    assert body["prompt"] == prompt and body["stream"] is True and body["max_tokens"] == 8
    assert body["model"] == "tiny" and body["temperature"] == 0.0
    assert set(body["stop_token_ids"]) == {tok.ids[t] for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, "<fim-pad>")}
    assert "Authorization" not in request["headers"]


def test_finish_reason_stop_is_end_of_text(fake, tok):
    fake.script.finish = "stop"
    result = engine(fake, tok).generate(spm(tok, "", "x = "), GenerationParams())
    assert result.stop_reason == "eot"


def test_a_stream_without_done_marker_ends_at_its_finish_reason(fake, tok):
    fake.script.done_marker = False
    result = engine(fake, tok).generate(spm(tok, "", "x = "), GenerationParams())
    assert tok.decode(result.ids) == "hello world\nmore text" and result.stop_reason == "length"
    assert len(fake.completions()) == 1  # not taken for a cut stream


def test_max_tokens_is_cut_to_the_served_context(fake, tok):
    prompt = spm(tok, "", "x = 1\n" * 20)
    eng = RemoteEngine(fake.url, "tiny", tok, n_positions=len(prompt) + 3, key="")
    result = eng.generate(prompt, GenerationParams(max_new_tokens=64))
    assert fake.completions()[0]["body"]["max_tokens"] == 3
    assert result.stop_reason == "context"
    with pytest.raises(RemoteError, match="does not fit") as err:
        RemoteEngine(fake.url, "tiny", tok, n_positions=len(prompt), key="").generate(prompt, GenerationParams())
    assert err.value.kind == "context"


def test_stop_rule_closes_the_stream_early(fake, tok):
    """The pipeline's stop rule runs on every streamed piece; the stream closes at once and the
    server sees its client go away (vLLM aborts the request then)."""
    fake.script.pieces = ["a", "b", "\n"] + ["z"] * 40
    fake.script.delay_s = 0.05
    seen = []

    def stop(ids):
        seen.append(tok.decode(ids))
        return "\n" in seen[-1]

    t0 = time.perf_counter()
    result = engine(fake, tok).generate(spm(tok, "", "x = "), GenerationParams(stop=stop))
    assert result.stop_reason == "stop" and tok.decode(result.ids) == "ab\n"
    assert seen == ["a", "ab", "ab\n"]
    assert time.perf_counter() - t0 < 1.0  # not the 2 s the whole stream takes
    assert fake.aborted.wait(2), "the server never noticed the closed stream"
    assert fake.streams_finished == 0


def test_cancellation_aborts_the_request_mid_stream(fake, tok):
    fake.script.pieces = ["tok"] * 200
    fake.script.delay_s = 0.01
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.perf_counter()
    result = engine(fake, tok).generate(spm(tok, "", "x = "), GenerationParams(max_new_tokens=200),
                                        cancelled=cancel.is_set)
    waited = time.perf_counter() - t0
    assert result.stop_reason == "cancelled" and result.ids == []
    assert 0.25 < waited < 1.0, waited  # not the 2 s the whole stream takes
    assert fake.aborted.wait(2) and fake.streams_finished == 0


def test_cancellation_while_waiting_for_the_first_token(fake, tok):
    fake.script.first_delay_s = 3
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    t0 = time.perf_counter()
    result = engine(fake, tok).generate(spm(tok, "", "x"), GenerationParams(), cancelled=cancel.is_set)
    assert result.stop_reason == "cancelled"
    assert time.perf_counter() - t0 < 1.5  # not the 3 s the first token takes


def test_first_token_timeout(fake, tok):
    fake.script.first_delay_s = 2
    eng = engine(fake, tok, first_token_timeout=0.3)
    t0 = time.perf_counter()
    with pytest.raises(RemoteError, match="did not send the first token within") as err:
        eng.generate(spm(tok, "", "x"), GenerationParams())
    assert err.value.kind == "timeout" and time.perf_counter() - t0 < 1.5
    assert len(fake.completions()) == 1  # a slow server is not retried


def test_total_timeout(fake, tok):
    fake.script.pieces = ["a"] * 100
    fake.script.delay_s = 0.05
    with pytest.raises(RemoteError, match="did not send the end of the answer"):
        engine(fake, tok, total_timeout=0.5).generate(spm(tok, "", "x"), GenerationParams(max_new_tokens=100))


def test_connection_refused_is_retried_with_backoff_then_reported(tok):
    with FakeOpenAI() as server:
        url = server.url
    eng = RemoteEngine(url, "tiny", tok, 512, key="", retries=2, backoff=0.1)  # nobody listens there now
    t0 = time.perf_counter()
    with pytest.raises(RemoteError, match="cannot reach .*is the server running") as err:
        eng.generate(spm(tok, "", "x"), GenerationParams())
    waited = time.perf_counter() - t0
    assert err.value.kind == "unreachable"
    assert 0.3 <= waited < 2.0, waited  # 0.1 + 0.2 s of backoff
    assert eng.remote.retries == 2 and eng.remote.reachable is False


def test_a_stream_cut_mid_way_is_retried(fake, tok):
    fake.script.drop_first, fake.script.drop_after = 1, 2
    result = engine(fake, tok, backoff=0.01).generate(spm(tok, "", "x"), GenerationParams())
    assert tok.decode(result.ids) == "hello world\nmore text"  # the second attempt, whole
    assert len(fake.completions()) == 2


@pytest.mark.parametrize("status,kind,pattern", [
    (500, "server", r"failed \(HTTP 500: boom\)"),
    (503, "server", r"HTTP 503"),
    (400, "context", r"too long for the served model"),
])
def test_http_errors_are_reported_not_retried(fake, tok, status, kind, pattern):
    fake.script.status = status
    if kind == "context":
        fake.script.error = "This model's maximum context length is 512 tokens."
    with pytest.raises(RemoteError, match=pattern) as err:
        engine(fake, tok).generate(spm(tok, "", "x"), GenerationParams())
    assert err.value.kind == kind
    assert len(fake.completions()) == 1


def test_an_error_event_in_the_stream(fake, tok):
    fake.script.in_stream_error = "engine died"
    with pytest.raises(RemoteError, match="failed while answering: engine died"):
        engine(fake, tok).generate(spm(tok, "", "x"), GenerationParams())


def test_model_not_served_lists_the_served_models(fake, tok):
    fake.script.models = ["santacoder", "other"]
    eng = RemoteEngine(fake.url, "wrong", tok, 512, key="")
    with pytest.raises(RemoteError, match="does not serve a model named 'wrong'; it serves: santacoder, other") \
            as err:
        eng.generate(spm(tok, "", "x"), GenerationParams())
    assert err.value.kind == "model"


def test_api_key_sent_as_bearer_and_never_logged(fake, tok, caplog, monkeypatch):
    fake.script.key = "s3cret-key"
    monkeypatch.delenv("SANTA_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    caplog.set_level(logging.DEBUG, logger="santa_lsp")
    with pytest.raises(RemoteError, match="needs an API key: set SANTA_API_KEY") as err:
        RemoteEngine(fake.url, "tiny", tok, 512).generate(spm(tok, "", "x"), GenerationParams())
    assert err.value.kind == "auth"
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    with pytest.raises(RemoteError, match="key in SANTA_API_KEY / OPENAI_API_KEY was refused"):
        RemoteEngine(fake.url, "tiny", tok, 512).generate(spm(tok, "", "x"), GenerationParams())
    monkeypatch.setenv("SANTA_API_KEY", "s3cret-key")  # SANTA_API_KEY wins over OPENAI_API_KEY
    eng = RemoteEngine(fake.url, "tiny", tok, 512)
    assert tok.decode(eng.generate(spm(tok, "", "x"), GenerationParams()).ids) == "hello world\nmore text"
    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer s3cret-key"
    assert "s3cret-key" not in repr(eng) and "s3cret-key" not in caplog.text


def test_events_are_told_once_and_recovery_too(fake, tok):
    told = []
    eng = engine(fake, tok, on_event=told.append)
    fake.script.status = 500
    for _ in range(3):
        with pytest.raises(RemoteError):
            eng.generate(spm(tok, "", "x"), GenerationParams())
    assert len(told) == 1 and "HTTP 500" in told[0]
    assert eng.status()["lastError"] == told[0] and eng.status()["errors"] == 3
    fake.script.status = 200
    eng.generate(spm(tok, "", "x"), GenerationParams())
    eng.generate(spm(tok, "", "x"), GenerationParams())
    assert len(told) == 2 and "answers again" in told[1]
    status = eng.status()
    assert status["lastError"] == "" and status["reachable"] is True and status["lastLatencyMs"] > 0
    assert status["endpoint"] == fake.url and status["model"] == "tiny"


# -- token healing: on the server when it constrains answers, else the healed text goes back -------
def test_healing_is_asked_of_the_server(fake, tok):
    """vLLM's structured outputs require the answer to start with the healed text; the prompt
    stays healed (the partial word removed)."""
    fake.script.pieces = ["pri", "nt(x)"]  # what a server that applies the constraint sends
    prompt = spm(tok, "\n", "for x in y:\n    ")  # the pipeline removed "pri" from the prefix
    eng = engine(fake, tok)
    result = eng.generate(prompt, GenerationParams(forced_text="pri"))
    (request,) = fake.completions()
    assert request["body"]["prompt"] == prompt
    assert request["body"]["structured_outputs"] == {"regex": "pri[\\s\\S]*"}
    assert tok.decode(result.ids) == "print(x)" and eng.heal_remotely
    eng.generate(prompt, GenerationParams())
    assert "structured_outputs" not in fake.completions()[-1]["body"]  # nothing healed, nothing asked


def test_a_server_that_ignores_the_constraint_gets_the_healed_text_back(fake, tok):
    fake.script.pieces = ["nt(x)"]  # the constraint was ignored: the answer does not start with "pri"
    prompt = spm(tok, "\n", "for x in y:\n    ")
    eng = engine(fake, tok)
    result = eng.generate(prompt, GenerationParams(forced_text="pri"))
    first, second = (r["body"] for r in fake.completions())
    assert "structured_outputs" in first
    assert second["prompt"] == prompt + tok.encode("pri") and "structured_outputs" not in second
    assert tok.decode(result.ids) == "print(x)"  # the answer starts with the healed text
    assert not eng.heal_remotely  # and the server is not asked again
    eng.generate(prompt, GenerationParams(forced_text="pri"))
    assert len(fake.completions()) == 3


def test_a_refused_constraint_is_retried_without_healing(fake, tok):
    fake.script.status, fake.script.error = 400, "unknown field structured_outputs"
    eng = engine(fake, tok)
    with pytest.raises(RemoteError):  # this fake refuses everything; it was asked both ways
        eng.generate(spm(tok, "", "x = "), GenerationParams(forced_text="pri"))
    first, second = (r["body"] for r in fake.completions())
    assert "structured_outputs" in first and "structured_outputs" not in second


def test_healed_text_is_put_back_before_the_suffix_in_psm(fake, tok):
    prompt = psm(tok, "for x in y:\n    ", "\nreturn")
    eng = engine(fake, tok)
    eng.heal_remotely = False
    eng.generate(prompt, GenerationParams(forced_text="pri"))
    sent = fake.completions()[0]["body"]["prompt"]
    at = prompt.index(tok.ids[FIM_SUFFIX])
    assert sent == prompt[:at] + tok.encode("pri") + prompt[at:]


def test_healing_regex():
    import re

    from santa_lsp.engine.remote import healing_regex

    assert healing_regex("pri") == r"pri[\s\S]*"
    assert re.fullmatch(healing_regex(" $x.y"), " $x.y(1)") and not re.fullmatch(healing_regex(" $x.y"), " $xzy")
    # Healed indentation is the user's: no more blanks right after it, anything else may follow.
    assert re.fullmatch(healing_regex("    "), "    return") and re.fullmatch(healing_regex("    "), "    ")
    assert not re.fullmatch(healing_regex("    "), "     return")


def test_the_pipeline_over_the_remote_engine(fake, tok):
    """CompletionService unchanged: prompt, healing, post-processing (single line)."""
    fake.script.pieces = [" pri", "nt(i)", "\n", "    x = 1", "\n"]
    service = CompletionService(engine(fake, tok), Options(max_new_tokens=16))
    text = "for i in range(3):\n    pri\n"
    completion = service.complete(text, text.index("pri") + 3, doc="file:///a.py")
    assert completion is not None and completion.text == "nt(i)"
    assert completion.healed.endswith("pri")


# -- prompts as text, for servers that refuse token ids ----------------------------------------------
def test_text_prompt_fallback_spells_the_fim_tokens(fake, tok, starcoder_tokenizer):
    star = Tokenizer(starcoder_tokenizer)
    fake.script.status, fake.script.error = 400, "prompt must be a string"
    eng = engine(fake, star)
    with pytest.raises(RemoteError):  # the fake refuses text too, but it was asked both ways
        eng.generate(spm(star, "\n", "x = "), GenerationParams())
    first, second = (r["body"] for r in fake.completions())
    assert isinstance(first["prompt"], list)
    assert second["prompt"] == "<fim_prefix><fim_suffix>\n<fim_middle>x = "
    assert second["add_special_tokens"] is False and eng.prompt_as_text


# -- connecting: the model list, the tokenizer, the context length -----------------------------------
def test_connect_reads_the_served_context_and_finds_the_tokenizer(fake, tiny_model_dir):
    fake.script.models, fake.script.max_model_len = [str(tiny_model_dir)], 300
    eng = connect(fake.url, str(tiny_model_dir), allow_download=False)
    assert eng.n_positions == 300 and eng.tokenizer.spelling == "santacoder"


def test_connect_to_a_model_not_served_is_a_load_error(fake, tiny_model_dir):
    fake.script.models = ["bundled", "santacoder"]
    with pytest.raises(ModelLoadError, match="does not serve a model named .*it serves: bundled, santacoder"):
        connect(fake.url, str(tiny_model_dir), allow_download=False)


def test_connect_with_a_refused_key_is_a_load_error(fake, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("SANTA_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake.script.key, fake.script.models = "k", [str(tiny_model_dir)]
    with pytest.raises(ModelLoadError, match="needs an API key"):
        connect(fake.url, str(tiny_model_dir), allow_download=False)


def test_connect_to_a_server_that_is_down_warns_and_recovers(tiny_model_dir):
    with FakeOpenAI(Script(models=[str(tiny_model_dir)])) as server:
        url = server.url
    warnings, events = [], []
    eng = connect(url, str(tiny_model_dir), allow_download=False, on_warning=warnings.append, on_event=events.append)
    assert len(warnings) == 1 and "cannot reach" in warnings[0] and "start once it answers" in warnings[0]
    assert eng.n_positions == 256  # the tiny model's config.json, until the server says otherwise
    assert eng.status()["reachable"] is False
    with FakeOpenAI(Script(models=[str(tiny_model_dir)], max_model_len=200)) as again:
        eng.endpoint = again.url  # the old port may be taken by now: point at the new server
        result = eng.generate([eng.tokenizer.ids[FIM_PREFIX]], GenerationParams())
        assert result.ids and events and "answers again" in events[-1]
        assert eng.n_positions == 200  # learnt from the model list once the server answered


def test_load_engine_with_an_endpoint(fake, tiny_model_dir):
    fake.script.models = [str(tiny_model_dir)]
    loaded = load_engine(Options(model=str(tiny_model_dir), endpoint=fake.url.removesuffix("/v1")))
    assert isinstance(loaded.engine, RemoteEngine)
    assert loaded.engine.endpoint == fake.url  # /v1 added
    assert loaded.device == f"remote 127.0.0.1:{fake.port}" and loaded.dtype == fake.url
    assert loaded.model == str(tiny_model_dir)


def test_bad_endpoints():
    assert normalize_endpoint(" http://h:8000/v1/ ") == "http://h:8000/v1"
    assert normalize_endpoint("https://h") == "https://h/v1"
    for bad in ("h:8000", "ftp://h/v1", "http://", "http://h:99999/v1", "http://h/v1?x=1"):
        with pytest.raises(ValueError):
            normalize_endpoint(bad)
    opts, errors = Options.from_dict({"endpoint": "gpu-box:8000"})
    assert opts.endpoint == "" and "expected an http:// or https:// URL" in errors[0]
    opts, errors = Options.from_dict({"endpoint": "http://gpu-box:8000/v1"})
    assert opts.endpoint == "http://gpu-box:8000/v1" and not errors


def test_cli_complete_through_an_endpoint(fake, tiny_model_dir, tmp_path, capsys):
    from santa_lsp.cli import main

    fake.script.models, fake.script.pieces = [str(tiny_model_dir)], ["nt(i)", "\n", "more"]
    src = tmp_path / "a.py"
    src.write_text("for i in range(3):\n    pri\n")
    code = main(["complete", str(src), "--line", "2", "--column", "8", "--endpoint", fake.url,
                 "--model", str(tiny_model_dir), "--stats"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "nt(i)\n"
    assert f"device=remote 127.0.0.1:{fake.port}" in err
    fake.script.models = ["served-name"]
    assert main(["complete", str(src), "--line", "2", "--column", "8", "--endpoint", fake.url,
                 "--model", str(tiny_model_dir)]) == 2
    assert "it serves: served-name" in capsys.readouterr().err


def test_bench_remote_variants(fake, tiny_model_dir, tmp_path):
    """`python -m benchmarks.keystrokes --endpoint`: remote SPM and PSM next to in-process (the fake has no
    /metrics: prefix-cache figures are zero there)."""
    from benchmarks.keystrokes import add_arguments, markdown, run

    fake.script.models, fake.script.pieces = [str(tiny_model_dir)], ["a", "b", "c", "d"]
    src = tmp_path / "walk.py"
    src.write_text("import os\n\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield name\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(src), "--model", str(tiny_model_dir), "--keystrokes", "6", "--max-new-tokens", "4",
                              "--no-startup", "--probe-steps", "2", "--bandwidth-mib", "16", "--variants", "ours",
                              "--endpoint", fake.url])
    args.argv = ["bench"]
    report = run(args, log=lambda msg: None)
    rows = {v["name"]: v for v in report["variants"]}
    assert set(rows) == {"ours", "remote", "remote-psm"}
    assert rows["remote"]["keystrokes"] == 6 and rows["remote"]["p50_ms"] > 0
    bodies = [r["body"] for r in fake.completions()]
    assert bodies and all(b["ignore_eos"] and b["max_tokens"] == 4 for b in bodies)  # exact lengths
    assert "prefix-cache hit rate over the run" in markdown(report)
