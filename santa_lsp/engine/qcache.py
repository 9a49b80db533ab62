"""Quantized int4 weights cached on disk, so that a start-up after the first one neither reads
the fp32 checkpoint (4.4 GB for the 1.1B) nor quantizes it again.

After the first `int4` load of a checkpoint directory, the prepared model (the native kernel's
packed 4-bit weights, the int8 lm_head and the small fp32 tensors: embeddings, norms, biases) is
written as one safetensors file under ~/.cache/santa-lsp/quantized/ (1.1 GB for the 1.1B, the
fp32 embeddings included). Its name hashes the checkpoint's files (name, size, mtime), the kind,
the instruction set and the layout version, so a changed checkpoint misses and is quantized
again. Only where the native int4 kernel runs: the torch fallback's packing is not stable across
torch versions, and it is the slower path anyway.
A damaged or unreadable cache file is ignored (and rewritten), never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from santa_lsp.engine import kernels
from santa_lsp.engine.model import GPTBigCode
from santa_lsp.engine import fused
from santa_lsp.engine.quantize import Int4Linear, Int8Linear, prepare_for_cpu
from santa_lsp.engine.weights import load_checkpoint, read_config

log = logging.getLogger(__name__)

LAYOUT = "int4-native-v2"  # bump when the packing or the module set changes
_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def cache_path(checkpoint: Path, kind: str) -> Path | None:
    """Where `checkpoint` quantized as `kind` is cached, or None where nothing is cached."""
    if kind != "int4" or not kernels.native_enabled():
        return None
    files = sorted(f for f in checkpoint.iterdir() if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"))
    lib = kernels.native_lib()
    isa = lib.santa_int4_isa() if lib is not None else 0  # the packing depends on the instruction set
    h = hashlib.sha256(f"{LAYOUT}\0{kind}\0{kernels.GROUP}\0{isa}\0{checkpoint.resolve()}".encode())
    for f in files:
        st = f.stat()
        h.update(f"\0{f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "santa-lsp" / "quantized" / f"{h.hexdigest()[:24]}.safetensors"


def save(model: GPTBigCode, path: Path) -> None:
    """Write an int4-prepared model (native layers) to `path`, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}  # wte, wpe, norms
    for i, block in enumerate(model.h):
        for name in _LINEARS:
            layer = block.get_submodule(name)
            assert isinstance(layer, Int4Linear) and layer.native, "only native int4 layers are cached"
            for part in ("packed", "scale", "mins", "bias"):
                tensors[f"h.{i}.{name}.{part}"] = getattr(layer, part)
    assert isinstance(model.lm_head, Int8Linear)
    q, scale, _ = model.lm_head.int8()
    tensors["lm_head.qweight"], tensors["lm_head.scale"] = q.contiguous(), scale.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def load(path: Path, checkpoint: Path, name: str) -> GPTBigCode:
    """The model `save` wrote, for the config of `checkpoint`."""
    from safetensors.torch import load_file

    config, _ = read_config(checkpoint, name)
    tensors = load_file(str(path))
    with torch.device("meta"):
        model = GPTBigCode(config)
    for i, block in enumerate(model.h):
        for lname in _LINEARS:
            parent, _, attr = lname.rpartition(".")
            p = f"h.{i}.{lname}."
            layer = Int4Linear.from_native(*(tensors.pop(p + part) for part in ("packed", "scale", "mins", "bias")))
            setattr(block.get_submodule(parent), attr, layer)
    model.lm_head = Int8Linear.from_int8(tensors.pop("lm_head.qweight"), tensors.pop("lm_head.scale"), None)
    model.load_state_dict(tensors, assign=True, strict=True)
    return fused.attach(model.eval())


def load_quantized(checkpoint: Path, name: str, kind: str) -> GPTBigCode:
    """`checkpoint` prepared for the CPU kernel `kind`: from the cache when it holds it, else
    loaded, quantized and (int4 with the native kernel) written to the cache for next time."""
    path = cache_path(checkpoint, kind)
    if path is not None and path.is_file():
        try:
            return load(path, checkpoint, name)
        except Exception as exc:  # a damaged cache file costs a re-quantization, nothing more
            log.warning("quantized-weight cache %s unreadable (%s): quantizing again", path, exc)
    model = prepare_for_cpu(load_checkpoint(checkpoint, name), kind)
    if path is not None:
        try:
            save(model, path)
        except Exception as exc:  # a full disk must not fail the load
            log.warning("could not cache quantized weights in %s (%s)", path, exc)
    return model
