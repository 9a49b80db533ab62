"""Fixtures: tiny SantaCoder-architecture checkpoints built on the spot (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from santa_lsp.engine.model import PRESETS, GPTBigCode, init_random
from santa_lsp.engine.tokenizer import SPECIALS
from santa_lsp.engine.weights import save_gpt_bigcode

TRAIN_TEXT = '''
def add(a, b):
    return a + b

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm(self):
        return (self.x ** 2 + self.y ** 2) ** 0.5

for i in range(10):
    print(i, add(i, i))
function greet(name) { return "Hello, " + name; }
public static void main(String[] args) { System.out.println("hi"); }
'''


def build_tokenizer(path: Path, vocab_size: int = 380) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([TRAIN_TEXT] * 20, trainer)
    tok.save(str(path))
    return path


def write_santacoder_format(model: GPTBigCode, path: Path) -> None:
    """The original bigcode/santacoder layout: gpt2 config, Conv1D [in, out], q_attn/kv_attn."""
    from safetensors.torch import save_file

    c = model.config
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "architectures": ["GPT2LMHeadCustomModel"], "model_type": "gpt2", "attention_head_type": "multiquery",
        "activation_function": "gelu_fast", "vocab_size": c.vocab_size, "n_positions": c.n_positions,
        "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": c.n_inner,
        "layer_norm_epsilon": c.layer_norm_epsilon,
    }))
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("attn.c_attn.weight"):
            p = k[: -len("c_attn.weight")]
            out["transformer." + p + "q_attn.weight"] = v[: c.n_embd].t().contiguous()
            out["transformer." + p + "kv_attn.weight"] = v[c.n_embd:].t().contiguous()
        elif k.endswith("attn.c_attn.bias"):
            p = k[: -len("c_attn.bias")]
            out["transformer." + p + "q_attn.bias"] = v[: c.n_embd].clone()
            out["transformer." + p + "kv_attn.bias"] = v[c.n_embd:].clone()
        elif k.endswith(("attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")):
            out["transformer." + k] = v.t().contiguous()
        else:
            out["transformer." + k] = v.clone()
    n = c.n_positions
    for i in range(c.n_layer):  # the mask buffers the original checkpoint carries
        out[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        out[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    out["lm_head.weight"] = model.wte.weight.detach().clone()
    save_file(out, str(path / "model.safetensors"))


def make_tiny_model(seed: int = 0) -> GPTBigCode:
    """Random tiny model, with larger-than-default weights so its greedy output is varied."""
    model = init_random(GPTBigCode(PRESETS["tiny"]), seed)
    with torch.no_grad():
        model.wte.weight.mul_(50)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Path:
    return build_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny checkpoint in the transformers-native gpt_bigcode format."""
    path = tmp_path_factory.mktemp("tiny-gpt-bigcode")
    save_gpt_bigcode(make_tiny_model(), path)
    (path / "tokenizer.json").write_bytes(tiny_tokenizer.read_bytes())
    return path


@pytest.fixture(scope="session")
def tiny_santacoder_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """The same tiny weights in the original bigcode/santacoder format."""
    path = tmp_path_factory.mktemp("tiny-santacoder")
    write_santacoder_format(make_tiny_model(), path)
    (path / "tokenizer.json").write_bytes(tiny_tokenizer.read_bytes())
    return path
