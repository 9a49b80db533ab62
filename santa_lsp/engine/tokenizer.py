"""tokenizer.json through `tokenizers`, with the FIM tokens resolved by name.

Two spellings exist: SantaCoder's `<fim-prefix>` (hyphens) and StarCoder's `<fim_prefix>`
(underscores, every later bigcode model: starcoderbase-1b, tiny_starcoder_py...). The
tokenizer's own spelling is used; `ids` is keyed by the SantaCoder names (`FIM_PREFIX`...)
whatever the spelling, and `names` says how this tokenizer spells each one.

User text is always encoded as plain text: a file that contains the characters
`<fim-prefix>` (or `<fim_prefix>`) must not smuggle a control token into the prompt.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from santa_lsp.errors import TokenizerError

EOT = "<|endoftext|>"
FIM_PREFIX = "<fim-prefix>"
FIM_MIDDLE = "<fim-middle>"
FIM_SUFFIX = "<fim-suffix>"
FIM_PAD = "<fim-pad>"
SPECIALS = (EOT, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD)
# FIM spellings, in the order they are tried: SantaCoder's, then StarCoder's. The two are never
# mixed within one tokenizer.
SPELLINGS = {
    "santacoder": {t: t for t in SPECIALS},
    "starcoder": {t: t.replace("-", "_") for t in SPECIALS},
}


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-printable-unicode table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Tokenizer:
    def __init__(self, path: Path, name: str = "") -> None:
        from tokenizers import Tokenizer as HFTokenizer

        name = name or str(path)
        if not path.is_file():
            raise TokenizerError(name, f"no tokenizer.json in {path.parent}", "Download the model again.")
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exception subclasses for bad files
            raise TokenizerError(name, f"tokenizer.json is unreadable ({err})", "Download the model again.") from err
        self._tok.encode_special_tokens = True  # special-token text in user code stays text
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.spelling = next((style for style, names in SPELLINGS.items() if all(n in vocab for n in names.values())),
                             "")
        if not self.spelling:
            style = "starcoder" if "<fim_prefix>" in vocab else "santacoder"
            missing = next(n for n in SPELLINGS[style].values() if n not in vocab)
            raise TokenizerError(
                name, f"the tokenizer has no '{missing}' token",
                "santa-lsp needs a FIM tokenizer: SantaCoder's (<fim-prefix>...) or StarCoder's (<fim_prefix>...).",
            )
        # Canonical (SantaCoder) name -> this tokenizer's spelling, and -> id.
        self.names: dict[str, str] = dict(SPELLINGS[self.spelling])
        self.ids: dict[str, int] = {token: vocab[spelled] for token, spelled in self.names.items()}
        if len(set(self.ids.values())) != len(SPECIALS):
            raise TokenizerError(name, "the FIM special tokens are not distinct")
        # Every special token ends a suggestion: StarCoder's <filename>, <gh_stars>... too.
        others = {i for i, added in self._tok.get_added_tokens_decoder().items() if added.special}
        self._special_ids = frozenset({*self.ids.values(), *others})

    @property
    def eot_id(self) -> int:
        return self.ids[EOT]

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special_ids

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        try:
            return self._tok.encode(text, add_special_tokens=False).ids
        except TypeError:  # lone surrogates (JSON can carry "\ud800"): not UTF-8, so one "?" each
            return self._tok.encode(text.encode("utf-8", "replace").decode("utf-8"), add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def prompt_text(self, ids: list[int]) -> str:
        """`ids` as text with the special tokens spelled out: a prompt for a server that only takes
        text (it re-tokenizes, so FIM token text in user code would become control tokens there)."""
        return self._tok.decode(ids, skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes a token stands for (b'' for specials and unknown ids)."""
        table = self._bytes_table
        return table[token_id] if 0 <= token_id < len(table) else b""

    @cached_property
    def _bytes_table(self) -> list[bytes]:
        decoder = _byte_decoder()
        table = [b""] * self.vocab_size
        specials = self.special_ids
        for token, token_id in self._tok.get_vocab(with_added_tokens=False).items():
            if token_id < len(table) and token_id not in specials:
                try:
                    table[token_id] = bytes(decoder[ch] for ch in token)
                except KeyError:  # not a byte-level token (should not happen for BPE byte-level)
                    table[token_id] = token.encode("utf-8")
        return table
