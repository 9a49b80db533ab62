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
from santa_lsp.engine.weights import (_weight_files, check_shapes, convert, load_checkpoint, mismatch,
                                      open_safetensors, read_config)

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
    model.lm_head = Int8Linear.from_int8(tensors.pop("lm_head.qweight"), tensors.pop("lm_head.scale"), None, native=True)
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
    model = quantize_streaming(checkpoint, name) if kind == "int4" else None
    if model is None:
        model = prepare_for_cpu(load_checkpoint(checkpoint, name), kind)
    if path is not None:
        try:
            save(model, path)
        except Exception as exc:  # a full disk must not fail the load
            log.warning("could not cache quantized weights in %s (%s)", path, exc)
    return model


def quantize_streaming(checkpoint: Path, name: str) -> GPTBigCode | None:
    """`checkpoint` quantized to int4 one block at a time, each block's tensors read from the
    safetensors files only when it is quantized: the first load's peak memory is the int4 model
    plus one fp32 block, not the whole fp32 model (4.4 GB for the 1.1B). The same checks as a
    whole load (names, shapes) and the same result (prepare_for_cpu's kernels, fp32 elsewhere).
    None where the weights are not safetensors (`.bin` files are read whole)."""
    import re

    config, fmt = read_config(checkpoint, name)
    files = _weight_files(checkpoint, name)
    if any(f.suffix != ".safetensors" for f in files):
        return None
    readers, groups = {}, {}
    for f in files:
        reader = open_safetensors(f, name)
        for key in reader.keys():
            readers[key] = reader
            layer = re.match(r"h\.(\d+)\.", key.removeprefix("transformer."))
            groups.setdefault(int(layer.group(1)) if layer else None, []).append(key)

    def part(layer: int | None) -> dict[str, torch.Tensor]:
        raw = {key: readers[key].read(key, name) for key in groups.pop(layer, [])}
        state = convert(raw, config, fmt, name, layers=[] if layer is None else [layer])
        unexpected = sorted(set(state) - set(expected))
        if unexpected:
            raise mismatch(name, [], unexpected)
        check_shapes(state, expected, name)
        seen.update(state)
        return {k: v.float() for k, v in state.items()}

    with torch.device("meta"):
        model = GPTBigCode(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    seen: set[str] = set()
    trim = _malloc_trim()
    for i, block in enumerate(model.h):
        state = part(i)
        for lname in _LINEARS:
            parent, _, attr = lname.rpartition(".")
            key = f"h.{i}.{lname}."
            if key + "weight" not in state:
                raise mismatch(name, [key + "weight"], [])
            setattr(block.get_submodule(parent), attr, Int4Linear(state.pop(key + "weight"), state.pop(key + "bias", None)))
        model.load_state_dict(state, strict=False, assign=True)
        del state
        trim()  # glibc keeps freed blocks of the size of a layer's weights otherwise
    model.load_state_dict(part(None), strict=False, assign=True)
    if groups:  # blocks beyond the config's n_layer
        raise mismatch(name, [], sorted(k for keys in groups.values() for k in keys))
    missing = sorted(set(expected) - seen)
    if missing:
        raise mismatch(name, missing, [])
    model.lm_head = Int8Linear(model.wte.weight, None, native=True)
    trim()
    return fused.attach(model.eval())


def _malloc_trim():
    """glibc's malloc_trim(0), or nothing where there is no glibc: freed memory goes back to the
    system instead of staying in the process's heap."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)
