"""Missing, corrupt, mismatched and offline checkpoints raise one clear ModelLoadError."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from santa_lsp.config import Options
from santa_lsp.engine import load_engine
from santa_lsp.engine.hub import BUNDLED_DIR
from santa_lsp.engine.weights import load_checkpoint
from santa_lsp.errors import ModelLoadError, ModelOfflineError


@pytest.fixture
def broken(tiny_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_model_dir, path)
    return path


def test_missing_config(broken):
    (broken / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_checkpoint(broken, "m")


def test_missing_weights(broken):
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        load_checkpoint(broken, "m")


def test_truncated_safetensors(broken):
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="damaged"):
        load_checkpoint(broken, "m")


def test_garbage_safetensors(broken):
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="damaged"):
        load_checkpoint(broken, "m")


def test_shape_mismatch(broken):
    config = json.loads((broken / "config.json").read_text())
    config["n_inner"] = config["n_inner"] * 2
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="shapes do not match"):
        load_checkpoint(broken, "m")


def test_unsupported_architecture(broken):
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "llama"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unsupported architecture"):
        load_checkpoint(broken, "m")


def test_pytorch_bin_loads_without_pickle_code(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    path = tmp_path / "bin"
    path.mkdir()
    shutil.copy(tiny_model_dir / "config.json", path)
    torch.save(load_file(str(tiny_model_dir / "model.safetensors")), path / "pytorch_model.bin")
    a, b = load_checkpoint(tiny_model_dir, "st"), load_checkpoint(path, "bin")
    ids = torch.arange(10)
    assert torch.equal(a(ids, 0, a.new_cache()), b(ids, 0, b.new_cache()))


def test_local_directory_and_bad_path(tiny_model_dir, tmp_path):
    loaded = load_engine(Options(model=str(tiny_model_dir)))
    assert loaded.model == str(tiny_model_dir) and not loaded.warning
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_engine(Options(model=str(tmp_path / "nowhere")))


def test_offline_hub_id_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-santa-cache")
    t0 = time.monotonic()
    with pytest.raises(ModelOfflineError, match="santa-lsp download"):
        from santa_lsp.engine.hub import resolve

        resolve("someone/not-cached-model")
    assert time.monotonic() - t0 < 5


@pytest.mark.skipif(not (BUNDLED_DIR / "config.json").is_file(), reason="bundled model not built yet")
def test_offline_default_model_falls_back_to_bundled(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    warnings = []
    loaded = load_engine(Options(), on_warning=warnings.append)
    assert loaded.model == "bundled" and loaded.requested == "bigcode/santacoder"
    assert warnings and "santa-lsp download" in warnings[0]


def test_thread_count_follows_the_model_loaded_last(tiny_model_dir):
    """A server that reloads from a small model to a big one must not stay on one thread."""
    import torch

    from santa_lsp.engine.load import _DEFAULT_THREADS, _set_threads
    from santa_lsp.engine.model import PRESETS, GPTBigCode

    load_engine(Options(model=str(tiny_model_dir)))
    assert torch.get_num_threads() == 1
    with torch.device("meta"):
        big = GPTBigCode(PRESETS["santacoder"])
    _set_threads(0, big)
    assert torch.get_num_threads() == _DEFAULT_THREADS
