"""Faults: broken checkpoints, an exception inside generation, out-of-memory. Each time the
request fails cleanly (an answer, empty), the server reports it (status `error` with the
reason and a message to the user, or an error in the log it forwards to the client) and keeps
serving: the same server process completes again once the fault is gone.

Checkpoint faults are real files (truncated, corrupted, mismatched); the exception inside
generation is real too (NaN weights sampled with temperature > 0); out-of-memory is
real once (an allocation beyond the server's address-space limit) and injected for the CUDA
and other kinds (see inject_faults.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import record

from benchmarks.lsp_client import RawClient, server_env

HERE = Path(__file__).resolve().parent
DOC = "file:///faults/doc.py"
TEXT = "import os\n\nprint("


def configure(client: RawClient, model: str, **extra) -> None:
    client.notify("workspace/didChangeConfiguration",
                  {"settings": {"santa": {"model": model, "maxNewTokens": 8, **extra}}})


def completion(client: RawClient, uri: str = DOC) -> dict:
    client.open(uri, TEXT)
    reply = client.wait(client.inline(uri, 2, 6), 20)
    assert reply is not None and "result" in reply, reply
    return reply["result"]


def errors_shown(client: RawClient) -> list[str]:
    return [n["params"]["message"] for n in list(client.notifications)
            if n["method"] in ("window/showMessage", "window/logMessage") and n["params"].get("type") == 1]


# -- broken checkpoints -----------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path) -> None:
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])


def _corrupt_header(path: Path) -> None:
    data = bytearray((path / "model.safetensors").read_bytes())
    data[8:40] = b"\xff" * 32
    (path / "model.safetensors").write_bytes(bytes(data))


def _lying_header(path: Path) -> None:
    """A valid safetensors header whose offsets point far past the end of the file."""
    header = json.dumps({"transformer.wte.weight": {"dtype": "F32", "shape": [384, 64], "data_offsets": [0, 1 << 40]}})
    raw = header.encode()
    (path / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 64)


def _garbage_file(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"\x00" * 7)


def _wrong_shapes(path: Path) -> None:
    config = json.loads((path / "config.json").read_text())
    config["n_embd"], config["n_inner"] = 128, 512
    (path / "config.json").write_text(json.dumps(config))


def _no_weights(path: Path) -> None:
    (path / "model.safetensors").unlink()


def _bad_config(path: Path) -> None:
    (path / "config.json").write_text("{not json")


def _foreign_architecture(path: Path) -> None:
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "llama"
    (path / "config.json").write_text(json.dumps(config))


def _tokenizer_without_fim(path: Path) -> None:
    # Misspelled: `fim_` is StarCoder's valid spelling, `fimx-` nobody's.
    tok = json.loads((path / "tokenizer.json").read_text())
    for token in tok["added_tokens"]:
        token["content"] = token["content"].replace("fim-", "fimx-")
    vocab = tok["model"]["vocab"]
    for name in list(vocab):
        if name.startswith("<fim-"):
            vocab[name.replace("fim-", "fimx-")] = vocab.pop(name)
    (path / "tokenizer.json").write_text(json.dumps(tok))


def _tokenizer_too_big(path: Path) -> None:
    config = json.loads((path / "config.json").read_text())
    config["vocab_size"] = 128  # the tokenizer has 380 tokens
    (path / "config.json").write_text(json.dumps(config))
    # weights follow the config so that only the tokenizer mismatch remains
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    state["transformer.wte.weight"] = state["transformer.wte.weight"][:128].contiguous()
    save_file(state, str(path / "model.safetensors"))


def _tokenizer_garbage(path: Path) -> None:
    (path / "tokenizer.json").write_text('{"model": 42}')


CHECKPOINT_FAULTS = {
    "missing-directory": None, "no-weights": _no_weights, "truncated-safetensors": _truncate,
    "corrupt-safetensors-header": _corrupt_header, "safetensors-offsets-past-eof": _lying_header,
    "safetensors-7-bytes": _garbage_file, "wrong-shapes": _wrong_shapes, "config-not-json": _bad_config,
    "foreign-architecture": _foreign_architecture, "tokenizer-without-fim-tokens": _tokenizer_without_fim,
    "tokenizer-larger-than-model": _tokenizer_too_big, "tokenizer-garbage": _tokenizer_garbage,
}


@pytest.fixture
def fault_server(shared_server, tiny_model_dir):
    """The shared server: after all its faults it must still serve the other tests."""
    yield shared_server
    if shared_server.proc.poll() is None:
        configure(shared_server, str(tiny_model_dir))
        shared_server.wait_ready(timeout=60)


def test_broken_checkpoints(fault_server, tiny_model_dir, tmp_path):
    """Every broken checkpoint: status `error` naming the problem, an error shown to the user,
    requests answered (empty); then the good model loads again in the same process."""
    c = fault_server
    survived = []
    for name, damage in CHECKPOINT_FAULTS.items():
        path = tmp_path / name
        if damage is not None:
            damage(_copy(tiny_model_dir, path))
        shown = len(errors_shown(c))
        configure(c, str(path))
        status = c.wait_ready(timeout=60, states=("error",))
        assert "cannot load model" in status["message"], (name, status)
        assert completion(c, f"file:///faults/{name}.py") == {"items": []}
        deadline = time.monotonic() + 5
        while len(errors_shown(c)) == shown and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(errors_shown(c)) > shown, f"{name}: no error shown to the user"
        survived.append(name)
        configure(c, str(tiny_model_dir))
        c.wait_ready(timeout=60)
        assert completion(c, f"file:///faults/{name}-after.py")["items"], name
    record("faults.checkpoints", survived)
    assert c.proc.poll() is None


def test_exception_inside_generation(fault_server, tiny_model_dir, tmp_path):
    """A real exception in the engine, nothing injected: a checkpoint whose weights hold NaN (a
    diverged training run) sampled with temperature > 0 makes torch.multinomial raise. The
    request is answered, the error counted and logged; the server goes on."""
    from safetensors.torch import load_file, save_file

    path = _copy(tiny_model_dir, tmp_path / "nan-weights")
    state = load_file(str(path / "model.safetensors"))
    state["transformer.ln_f.weight"] = state["transformer.ln_f.weight"] * float("nan")
    save_file(state, str(path / "model.safetensors"))

    c = fault_server
    configure(c, str(path), temperature=0.8)
    c.wait_ready(timeout=60)
    before = c.status()["stats"]["errors"]
    assert completion(c, "file:///faults/nan.py") == {"items": []}
    assert c.status()["stats"]["errors"] == before + 1
    configure(c, str(tiny_model_dir))
    c.wait_ready(timeout=60)
    assert completion(c, "file:///faults/nan-after.py")["items"]
    record("faults.exception_in_generation", "survived")


@pytest.fixture(scope="module")
def long_context_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A real, loadable 64 MB checkpoint whose KV cache needs 8 GB: 2^20 positions, 64 layers
    of one 16-wide head. Its first request must allocate 4 GB for K."""
    import torch

    from santa_lsp.engine.model import GPTBigCode, ModelConfig, init_random
    from santa_lsp.engine.weights import save_gpt_bigcode

    path = tmp_path_factory.mktemp("long-context")
    config = ModelConfig(vocab_size=384, n_positions=1 << 20, n_embd=16, n_layer=64, n_head=1, n_inner=32)
    with torch.no_grad():
        save_gpt_bigcode(init_random(GPTBigCode(config), seed=0).eval(), path)
    (path / "tokenizer.json").write_bytes(tiny_tokenizer.read_bytes())
    return path


def _address_space_limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


ADDRESS_SPACE_LIMIT = 3 << 30  # the server needs about 1 GiB of address space with the tiny model


def test_out_of_memory_and_kernel_failures(tiny_model_dir, long_context_model_dir, tmp_path):
    """Out of memory, twice. Real: the server runs under a 3 GiB address-space limit (the
    machine's memory, as far as it knows) and loads a model whose KV cache needs 8 GB; torch's
    allocator fails on the first request. Injected (see inject_faults.py): CUDA
    torch.OutOfMemoryError, MemoryError and RuntimeError from every forward pass.

    Each time the requests are answered empty, the errors counted and shown in the client's
    log; once the fault is gone the same process completes again, in the same documents
    (their cache slots survived a failure half-way through) and in new ones."""
    flag = tmp_path / "fault"
    client = RawClient([sys.executable, str(HERE / "inject_faults.py"), "serve", "--stdio"],
                       env=server_env({"SANTA_FAULT_FLAG": str(flag)}), stderr_path=tmp_path / "stderr.log",
                       preexec_fn=_address_space_limit)
    try:
        client.initialize({"model": str(tiny_model_dir), "maxNewTokens": 8, "device": "cpu"})
        client.wait_ready(timeout=90)
        errors = 0
        for kind in ["cuda-oom", "memory", "runtime"]:
            flag.write_text(kind)
            for i in range(3):
                assert completion(client, f"file:///faults/{kind}{i}.py") == {"items": []}
            errors += 3
            assert client.status()["stats"]["errors"] == errors
            flag.unlink()
            assert completion(client, f"file:///faults/{kind}0.py")["items"]
            assert completion(client, f"file:///faults/{kind}-fresh.py")["items"]
            record(f"faults.injected_{kind}", "survived")
        assert any("completion failed" in m for m in errors_shown(client))

        configure(client, str(long_context_model_dir), device="cpu")
        client.wait_ready(timeout=90)
        assert completion(client, "file:///faults/huge-cache.py") == {"items": []}
        assert client.status()["stats"]["errors"] == errors + 1
        log = (tmp_path / "stderr.log").read_text()
        assert "can't allocate memory" in log or "MemoryError" in log
        configure(client, str(tiny_model_dir), device="cpu")
        client.wait_ready(timeout=90)
        assert completion(client, "file:///faults/after-oom.py")["items"]
        record("faults.real_out_of_memory", "survived")
        assert client.shutdown() == 0
    finally:
        client.close()
