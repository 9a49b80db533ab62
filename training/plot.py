"""Plot the training log (training/runs/main/log.csv) to docs/training-loss.png.

Usage: python3 training/plot.py [--log training/runs/main/log.csv] [--out docs/training-loss.png]
       [--tokens-offset N]   # a run continued from a model that had already seen N tokens
       [--start-val LOSS]    # that model's validation loss, plotted at N
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", type=Path, default=ROOT / "runs" / "main" / "log.csv")
    ap.add_argument("--out", type=Path, default=ROOT.parent / "docs" / "training-loss.png")
    ap.add_argument("--tokens-offset", type=int, default=0)
    ap.add_argument("--start-val", type=float, default=None)
    ap.add_argument("--title", default="bundled model: gpt_bigcode MQA, FIM 0.5 (half SPM)")
    args = ap.parse_args()

    train, val = [], []
    with open(args.log) as f:
        for row in csv.DictReader(f):
            tokens = (int(row["tokens"]) + args.tokens_offset) / 1e6
            if row["val_loss"]:
                val.append((tokens, float(row["val_loss"])))
            elif row["loss"]:
                train.append((tokens, float(row["loss"])))

    if args.start_val is not None:
        val.insert(0, (args.tokens_offset / 1e6, args.start_val))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.8, label="train loss (per step)")
    if val:
        ax.plot(*zip(*val), "o-", color="C3", label="validation loss (held-out files)")
    ax.set_xlabel("tokens trained (millions)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
