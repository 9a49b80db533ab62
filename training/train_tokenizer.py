"""Train the byte-level BPE tokenizer on the training split of the corpus.

Special tokens are SantaCoder's, with hyphens, and get the first ids:
  <|endoftext|>=0, <fim-prefix>=1, <fim-middle>=2, <fim-suffix>=3, <fim-pad>=4
(code must still look ids up by name, never hard-code them).

Usage: python3 training/train_tokenizer.py [--vocab-size 8192] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent
SPECIAL_TOKENS = ["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"]


def iter_texts(path: Path):
    with open(path) as f:
        for line in f:
            yield json.loads(line)["text"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus" / "train.jsonl")
    ap.add_argument("--vocab-size", type=int, default=8192,
                    help="total size including the special tokens (a multiple of 128)")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "tokenizer.json")
    args = ap.parse_args()

    tok = Tokenizer(models.BPE())
    # Like GPT-2/SantaCoder: byte-level, no prefix space, so decode(encode(x)) == x.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(iter_texts(args.corpus), trainer=trainer)
    for t in SPECIAL_TOKENS:
        assert tok.encode(t).ids == [tok.token_to_id(t)], t
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out))
    sample = "def add(a, b):\n    return a + b\n"
    assert tok.decode(tok.encode(sample).ids) == sample
    print(f"saved {args.out}: vocab {tok.get_vocab_size()}, "
          f"ids {[tok.token_to_id(t) for t in SPECIAL_TOKENS]}")


if __name__ == "__main__":
    main()
