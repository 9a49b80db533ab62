"""Checkpoint reading: both SantaCoder formats, converted in-process (never trust_remote_code).

- transformers-native `gpt_bigcode`: nn.Linear weights [out, in], fused `attn.c_attn`.
- original `bigcode/santacoder` (`gpt2` + `attention_head_type: multiquery`): GPT-2 Conv1D
  weights stored [in, out], separate `attn.q_attn` and `attn.kv_attn`, mask buffers
  `attn.bias` / `attn.masked_bias` that are not weights.

Only safetensors, or `.bin` through `torch.load(weights_only=True)`: no pickle code runs.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path

import torch

from santa_lsp.engine.model import GPTBigCode, ModelConfig
from santa_lsp.errors import ModelLoadError

# Original-format Conv1D weights that must be transposed to nn.Linear's [out, in].
_CONV1D = ("attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


MAX_CONFIG_BYTES = 1 << 20  # config.json is a few hundred bytes; /dev/zero is endless


def check_files(path: Path, name: str) -> None:
    """Refuse checkpoint files that are not regular files before anything opens them: a FIFO
    blocks the opener until someone writes to it, and a device (a symlink to /dev/zero) never
    ends."""
    for file in ("config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin"):
        try:
            mode = os.stat(path / file).st_mode
        except OSError:
            continue  # missing: the readers say so in their own words
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
                "not a regular file"
            raise ModelLoadError(name, f"{file} in {path} is {kind}", "Point the model option at a checkpoint directory.")


def read_config(path: Path, name: str) -> tuple[ModelConfig, str]:
    """Parse config.json; return (config, format) where format is 'gpt_bigcode' or 'santacoder'."""
    check_files(path, name)
    try:
        with open(path / "config.json", "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ModelLoadError(name, f"config.json is over {MAX_CONFIG_BYTES >> 20} MB: not a model configuration",
                                 "Point the model option at a checkpoint directory.")
        raw = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(name, f"no config.json in {path}", "Point the model option at a checkpoint directory.")
    except (OSError, ValueError) as err:
        raise ModelLoadError(name, f"config.json is unreadable ({err})", "Re-download the model.")
    if not isinstance(raw, dict):
        raise ModelLoadError(name, "config.json is not a JSON object", "Re-download the model.")
    model_type = raw.get("model_type")
    if model_type == "gpt_bigcode":
        if raw.get("multi_query", True) is not True:
            raise ModelLoadError(name, "only multi-query gpt_bigcode models are supported (multi_query is false)")
        fmt = "gpt_bigcode"
    elif model_type == "gpt2" and raw.get("attention_head_type") == "multiquery":
        fmt = "santacoder"
    else:
        raise ModelLoadError(
            name,
            f"unsupported architecture (model_type={model_type!r})",
            "santa-lsp runs SantaCoder-architecture models: gpt_bigcode with multi_query, or bigcode/santacoder.",
        )
    act = raw.get("activation_function", "gelu_pytorch_tanh")
    if act not in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast", "gelu"):
        raise ModelLoadError(name, f"unsupported activation_function {act!r}")
    try:
        n_embd = int(raw["n_embd"])
        config = ModelConfig(
            vocab_size=int(raw["vocab_size"]),
            n_positions=int(raw["n_positions"]),
            n_embd=n_embd,
            n_layer=int(raw["n_layer"]),
            n_head=int(raw["n_head"]),
            n_inner=int(raw.get("n_inner") or 4 * n_embd),
            layer_norm_epsilon=float(raw.get("layer_norm_epsilon", 1e-5)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(name, f"config.json lacks or mangles a required field ({err})")
    if min(config.vocab_size, config.n_positions, config.n_embd, config.n_layer, config.n_head) <= 0 or (
        config.n_embd % config.n_head
    ):
        raise ModelLoadError(name, f"config.json describes an impossible model: {config}")
    return config, fmt


def read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """Read every tensor of a checkpoint directory (single file or sharded with an index).
    safetensors files are memory-mapped: the tensors are read as the model first touches them
    (a whole fp32 load of the 1.1B: 1.1 s here against ~20 s reading it all up front)."""
    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(path, name):
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                state.update(load_file(str(file)))
            else:
                state.update(torch.load(str(file), map_location="cpu", weights_only=True))
        except Exception as err:  # safetensors and torch raise many types for damaged files
            raise damaged(name, f"weights file {file.name}", err) from err
    return state


def damaged(name: str, what: str, err: BaseException) -> ModelLoadError:
    return ModelLoadError(name, f"{what} is damaged or unreadable ({type(err).__name__}: {err})",
                          "Delete it and download the model again.")


def open_safetensors(file: Path, name: str) -> SafetensorsReader:
    try:
        return SafetensorsReader(file)
    except Exception as err:  # a bad header: many exception types
        raise damaged(name, f"weights file {file.name}", err) from err


class SafetensorsReader:
    """One tensor at a time from a .safetensors file, with plain reads rather than a memory map:
    what was read and dropped does not stay in the process's resident memory (a map keeps every
    touched page of a 4.4 GB file resident while any tensor of it lives): for the block-by-block
    int4 load (qcache.quantize_streaming), which drops each block's fp32 tensors once quantized."""

    DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError(f"header of {size} bytes")
            header = json.loads(f.read(size))
        self.base = 8 + size
        self.entries = {k: v for k, v in header.items() if k != "__metadata__"}

    def keys(self) -> list[str]:
        return list(self.entries)

    def read(self, key: str, name: str) -> torch.Tensor:
        """get_tensor, with a damaged tensor as the model's one clear error."""
        try:
            return self.get_tensor(key)
        except Exception as err:
            raise damaged(name, f"tensor {key} of {self.path.name}", err) from err

    def get_tensor(self, key: str) -> torch.Tensor:
        entry = self.entries[key]
        start, end = entry["data_offsets"]
        buf = bytearray(end - start)
        with open(self.path, "rb") as f:
            f.seek(self.base + start)
            if f.readinto(buf) != len(buf):
                raise ValueError(f"file ends inside tensor {key}")
        dtype = self.DTYPES[entry["dtype"]]
        if not buf:
            return torch.empty(entry["shape"], dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(entry["shape"])


def _weight_files(path: Path, name: str) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as err:
                raise ModelLoadError(name, f"{index_name} is unreadable ({err})")
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise ModelLoadError(name, f"missing weight shards {missing}", "Download the model again.")
            return [path / s for s in shards]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (path / single).is_file():
            return [path / single]
    raise ModelLoadError(name, f"no model.safetensors or pytorch_model.bin in {path}", "Download the model again.")


def convert(state: dict[str, torch.Tensor], config: ModelConfig, fmt: str, name: str,
            layers: Iterable[int] | None = None) -> dict[str, torch.Tensor]:
    """Map a checkpoint's tensors onto GPTBigCode's parameter names and layouts. `layers`: the
    blocks whose tensors `state` holds (all by default; a layer-by-layer load passes one)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        key = key.removeprefix("transformer.")
        if key == "lm_head.weight" or key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # tied to wte / causal-mask buffers
        out[key] = tensor
    if fmt == "santacoder":
        for i in range(config.n_layer) if layers is None else layers:
            p = f"h.{i}."
            try:
                q_w, kv_w = out.pop(p + "attn.q_attn.weight"), out.pop(p + "attn.kv_attn.weight")
                q_b, kv_b = out.pop(p + "attn.q_attn.bias"), out.pop(p + "attn.kv_attn.bias")
            except KeyError as err:
                raise ModelLoadError(name, f"checkpoint lacks tensor {err}") from None
            out[p + "attn.c_attn.weight"] = torch.cat([q_w, kv_w], dim=1).t().contiguous()
            out[p + "attn.c_attn.bias"] = torch.cat([q_b, kv_b])
            for suffix in _CONV1D:
                if p + suffix in out:
                    out[p + suffix] = out[p + suffix].t().contiguous()
    return out


def build_model(config: ModelConfig, state: dict[str, torch.Tensor], name: str) -> GPTBigCode:
    """Instantiate GPTBigCode and load `state` into it, checking every name and shape."""
    with torch.device("meta"):
        model = GPTBigCode(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise mismatch(name, missing, unexpected)
    check_shapes(state, expected, name)
    state = {k: v.float() if v.dtype not in (torch.float32, torch.float16, torch.bfloat16) else v for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def check_shapes(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], name: str) -> None:
    """Every tensor of `state` has the shape `expected` gives its name."""
    wrong = [f"{k}: {tuple(v.shape)} != {expected[k]}" for k, v in state.items() if tuple(v.shape) != expected[k]]
    if wrong:
        raise ModelLoadError(name, f"tensor shapes do not match config.json ({'; '.join(wrong[:3])})")


def mismatch(name: str, missing: list[str], unexpected: list[str]) -> ModelLoadError:
    return ModelLoadError(
        name,
        f"checkpoint does not match its config (missing {missing[:4]}, unexpected {unexpected[:4]})",
        "The files may belong to different models; download the model again.",
    )


def load_checkpoint(path: Path, name: str) -> GPTBigCode:
    """config.json + weights in either format -> GPTBigCode on CPU, in the checkpoint's dtype."""
    config, fmt = read_config(path, name)
    return build_model(config, convert(read_state_dict(path, name), config, fmt, name), name)


def save_gpt_bigcode(model: GPTBigCode, path: Path, eot_id: int = 0) -> None:
    """Write config.json + model.safetensors in the transformers-native gpt_bigcode format."""
    from safetensors.torch import save_file

    c = model.config
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["GPTBigCodeForCausalLM"],
        "model_type": "gpt_bigcode",
        "multi_query": True,
        "activation_function": "gelu_pytorch_tanh",
        "vocab_size": c.vocab_size,
        "n_positions": c.n_positions,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.n_inner,
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {f"transformer.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
