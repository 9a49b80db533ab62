"""Export a trained model to the transformers-native gpt_bigcode layout.

Writes config.json, model.safetensors (fp32 if it fits in --max-mb, else fp16) and
tokenizer.json into the bundled model directory; the result loads with
GPTBigCodeForCausalLM.from_pretrained(dir) and with our own engine.

Usage (from a training checkpoint):
  python3 training/export.py --checkpoint training/runs/main/checkpoint.pt \
      [--out santa_lsp/models/bundled]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT.parent / "santa_lsp" / "models" / "bundled"
MAX_MB = 32


def export(model, tokenizer_path: Path, out_dir: Path, meta: dict | None = None,
           max_mb: float = MAX_MB) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    # lm_head is tied to wte: store it once, as transformers does
    state = {k: v.detach().contiguous() for k, v in state.items() if k != "lm_head.weight"}
    n_bytes = sum(v.numel() * 4 for v in state.values())
    dtype = torch.float32 if n_bytes <= max_mb * 1e6 else torch.float16
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tmp = out_dir / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.chmod(0o644)
    tmp.replace(out_dir / "model.safetensors")  # atomic: readers never see half a file

    cfg = model.config.to_dict()
    cfg["architectures"] = ["GPTBigCodeForCausalLM"]
    cfg["torch_dtype"] = "float32" if dtype == torch.float32 else "float16"
    cfg["tie_word_embeddings"] = True
    for k in ("_name_or_path", "transformers_version", "dtype"):
        cfg.pop(k, None)
    if meta:
        cfg["santa_lsp_training"] = {k: meta[k] for k in
                                     ("step", "tokens", "train_loss", "val_loss") if k in meta}
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(tokenizer_path, out_dir / "tokenizer.json")
    return out_dir


def main() -> None:
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "main" / "checkpoint.pt")
    ap.add_argument("--config-from", type=Path, default=DEFAULT_OUT / "config.json",
                    help="config.json describing the checkpoint's architecture")
    ap.add_argument("--tokenizer", type=Path, default=ROOT / "data" / "tokenizer.json")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=True)  # tensors and plain dicts only
    cfg = json.loads(args.config_from.read_text())
    cfg.pop("santa_lsp_training", None)
    model = GPTBigCodeForCausalLM(GPTBigCodeConfig(**cfg))
    model.load_state_dict(ck["model"])
    export(model, args.tokenizer, args.out, ck.get("meta"))
    print(f"exported to {args.out}")


if __name__ == "__main__":
    main()
