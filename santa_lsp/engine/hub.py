"""Model names -> local checkpoint directories: `bundled`, local paths, hub ids.

Deciding never hangs: a hub id is looked up in the local cache first; the network is only
tried when downloads are allowed, HF_HUB_OFFLINE is unset and a 3-second connection probe
reaches the hub.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any

from santa_lsp.errors import ModelLoadError, ModelOfflineError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models" / "bundled"
HUB_HOST = "huggingface.co"
PROBE_TIMEOUT_S = 3.0
# Everything the engine reads; one weights format is chosen per repository.
_META_FILES = ["config.json", "tokenizer.json"]
# A hub id: owner/name, each of letters, digits, '-', '_' and '.' (the hub's own rule).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
KNOWN_NAMES = ("bundled", "bigcode/santacoder", "synthetic:tiny", "synthetic:santacoder")


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(name: str, revision: str | None = None, allow_download: bool = True, tqdm_class: Any = None) -> Path:
    """Return the directory holding config.json, tokenizer.json and the weights for `name`."""
    if name == "bundled":
        if not (BUNDLED_DIR / "config.json").is_file():
            raise ModelLoadError(name, f"the bundled model is missing from {BUNDLED_DIR}", "Reinstall santa-lsp.")
        return BUNDLED_DIR
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise ModelLoadError(name, f"{path} is not a directory", "Give a checkpoint directory or a hub id.")
    if not is_hub_id(name):
        raise ModelLoadError(name, "it is neither a local directory nor a hub id (owner/name)", unknown_name_fix(name))
    return _from_hub(name, revision, allow_download, tqdm_class)


def is_hub_id(name: str) -> bool:
    return _HUB_ID.fullmatch(name) is not None and ".." not in name


def unknown_name_fix(name: str) -> str:
    close = difflib.get_close_matches(name, KNOWN_NAMES, n=1, cutoff=0.6)
    hint = f"Did you mean '{close[0]}'? " if close else ""
    return (f"{hint}Give 'bundled', a hub id such as 'bigcode/santacoder', a checkpoint directory, "
            "or 'synthetic:<preset>'.")


def _from_hub(repo: str, revision: str | None, allow_download: bool, tqdm_class: Any) -> Path:
    from huggingface_hub import snapshot_download

    try:
        cached = snapshot_download(repo, revision=revision, local_files_only=True)
        if complete_checkpoint(Path(cached)):
            return Path(cached)
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        pass
    how = f"Run `santa-lsp download {repo}` on a machine with internet access (it fills the Hugging Face cache), or set the model option to a local directory."
    if offline_mode():
        raise ModelOfflineError(repo, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set", how)
    if not allow_download:
        raise ModelOfflineError(repo, "it is not in the local Hugging Face cache", how)
    if not hub_reachable():
        raise ModelOfflineError(repo, f"it is not cached and {HUB_HOST} cannot be reached", how)
    try:
        from huggingface_hub import list_repo_files

        files = list_repo_files(repo, revision=revision)
        weights = ["*.safetensors", "model.safetensors.index.json"]
        if not any(f.endswith(".safetensors") for f in files):
            weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
        kwargs = {"tqdm_class": tqdm_class} if tqdm_class is not None else {}
        return Path(snapshot_download(repo, revision=revision, allow_patterns=_META_FILES + weights, **kwargs))
    except Exception as err:
        raise ModelLoadError(repo, f"download failed ({type(err).__name__}: {err})", how) from err


def complete_checkpoint(path: Path) -> bool:
    """Whether `path` holds a config and weights (a tokenizer is checked when loading)."""
    return (path / "config.json").is_file() and (any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin")))


def hub_reachable() -> bool:
    """True if a TCP connection to the hub opens within PROBE_TIMEOUT_S (DNS included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=PROBE_TIMEOUT_S):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return bool(result and result[0])
