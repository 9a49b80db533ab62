"""Prefill + decode with KV-cache reuse between requests.

The engine keeps a few cache slots, one per document, least recently used evicted first. Each
slot remembers the token ids whose K/V it holds. A request keeps the longest token prefix its
prompt shares with its slot (rewinding is free: the cache is written by position) and computes
only the rest.
Tokens generated last time count too, so accepting a suggestion costs nothing to re-read.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

import torch

from santa_lsp.engine.graphs import GraphedDecoder
from santa_lsp.engine.model import GPTBigCode, KVCache
from santa_lsp.engine.tokenizer import Tokenizer
from santa_lsp.errors import InvalidPrompt

# Prefill in chunks: bounded activation memory and a cancellation check between chunks.
PREFILL_CHUNK = 256


@dataclass
class GenerationParams:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    # Text the output must begin with (token healing): early tokens are constrained to it.
    forced_text: str = ""
    # Called with the ids generated so far; True stops generation (e.g. a line is complete).
    stop: Callable[[list[int]], bool] | None = None
    seed: int | None = None
    # Benchmarks: generate exactly max_new_tokens (end-of-text and special tokens suppressed),
    # so that an early stop flatters no one.
    exact_length: bool = False
    # Speculative decoding from the document (greedy only): up to this many tokens that follow
    # an earlier occurrence of the last tokens are checked in one forward pass. 0: off.
    draft_tokens: int = 6
    # Benchmarks: these tokens are chosen whatever the logits say (then end-of-text), so random
    # weights do the arithmetic while a real file decides what comes next (drafts, stops).
    teacher: list[int] | None = None


class StopReason(str, Enum):
    """Why generation ended. A `str`, so it compares with, logs and serializes as its value."""

    EOT = "eot"  # the model ended the text
    SPECIAL = "special"  # the model chose a FIM control token
    STOP = "stop"  # the caller's stop rule said the answer is complete
    LENGTH = "length"  # max_new_tokens reached
    CONTEXT = "context"  # the model's context is full (fewer than max_new_tokens fitted)
    CANCELLED = "cancelled"  # `cancelled()` turned true

    def __str__(self) -> str:  # "eot" in f-strings and logs, not "StopReason.EOT"
        return self.value


@dataclass
class GenerationResult:
    ids: list[int]
    stop_reason: StopReason
    prompt_tokens: int
    reused_tokens: int
    computed_tokens: int
    prefill_ms: float
    decode_ms: float
    drafted: int = 0  # tokens proposed from the document (speculative decoding)
    accepted: int = 0  # of those, tokens the model agreed with

    @property
    def generated_tokens(self) -> int:
        return len(self.ids)


@dataclass
class _Slot:
    key: str
    cache: KVCache
    ids: list[int] = field(default_factory=list)  # tokens whose K/V are valid in `cache`
    last_used: float = 0.0
    decoder: GraphedDecoder | None = None  # CUDA only: the captured static decode step


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class DraftRate:
    """Whether drafting pays here, from the recent share of drafted tokens the model accepted.

    A verification pass over k drafted tokens costs more than one decode step (on the int4 path
    of the 1.1B, 7 tokens take 3x one), so drafts the model keeps rejecting (a model that does
    not copy from its document, random weights) make every keystroke slower. Below
    MIN_ACCEPTANCE, only every PROBE_EVERY-th chance drafts, PROBE_TOKENS tokens, so the rate is
    still measured (cheaply) and drafting comes back when the model starts agreeing again.
    """

    MIN_ACCEPTANCE = 0.2  # accepted / drafted below which drafting is mostly off
    EVIDENCE = 48.0  # drafted tokens (decayed) before the rate is trusted
    DECAY = 0.97  # per verification pass: the last ~30 passes count
    PROBE_EVERY = 16
    PROBE_TOKENS = 2

    def __init__(self) -> None:
        self.drafted = self.accepted = 0.0
        self._skipped = 0

    def budget(self, wanted: int) -> int:
        """How many tokens to draft now, of the `wanted`."""
        if self.drafted < self.EVIDENCE or self.accepted >= self.MIN_ACCEPTANCE * self.drafted:
            return wanted
        self._skipped += 1
        return min(wanted, self.PROBE_TOKENS) if self._skipped % self.PROBE_EVERY == 0 else 0

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted = self.drafted * self.DECAY + drafted
        self.accepted = self.accepted * self.DECAY + accepted


class Engine:
    """A model, its tokenizer and its KV-cache slots. One generation runs at a time."""

    def __init__(self, model: GPTBigCode, tokenizer: Tokenizer, cache_slots: int = 4, name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_slots = max(1, cache_slots)
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        p = model.wte.weight
        self.device, self.dtype = p.device, p.dtype
        self.n_positions = model.config.n_positions
        self.drafts = DraftRate()

    # -- cache slots -------------------------------------------------------------------------
    def _take_slot(self, key: str, prompt: list[int]) -> tuple[_Slot, int]:
        """The document's own slot, else a new one, else the least recently used one."""
        slot = next((s for s in self._slots if s.key == key), None)
        if slot is None:
            if len(self._slots) < self.max_slots:
                slot = _Slot(key, self.model.new_cache())
                self._slots.append(slot)
            else:
                slot = min(self._slots, key=lambda s: s.last_used)
        slot.key, slot.last_used = key, time.monotonic()
        return slot, common_prefix_len(slot.ids, prompt)

    def clear_cache(self) -> None:
        with self._lock:
            self._slots.clear()

    def cache_bytes(self) -> int:
        return sum(s.cache.nbytes() for s in self._slots)

    # -- generation --------------------------------------------------------------------------
    def generate(
        self,
        prompt: list[int],
        params: GenerationParams,
        key: str = "",
        cancelled: Callable[[], bool] = lambda: False,
        reuse: bool = True,
    ) -> GenerationResult:
        if not prompt:
            raise InvalidPrompt("empty prompt")
        with self._lock:
            return self._generate(prompt, params, key, cancelled, reuse)

    def _generate(self, prompt, params, key, cancelled, reuse) -> GenerationResult:
        room = self.n_positions - len(prompt)
        if room <= 0:
            raise InvalidPrompt(f"prompt of {len(prompt)} tokens does not fit the context of {self.n_positions}")
        slot, reused = self._take_slot(key, prompt)
        if not reuse:
            reused = 0
        reused = min(reused, len(prompt) - 1)  # the last prompt token must run to give logits
        slot.ids = slot.ids[:reused]

        t0 = time.perf_counter()
        logits = None
        pos = reused
        while pos < len(prompt):
            if cancelled():
                return self._result([], StopReason.CANCELLED, prompt, reused, pos - reused, t0, time.perf_counter())
            chunk = prompt[pos : pos + PREFILL_CHUNK]
            ids = torch.tensor(chunk, dtype=torch.long, device=self.device)
            logits = self.model(ids, pos, slot.cache, last_only=True)[-1]
            pos += len(chunk)
            slot.ids = prompt[:pos]
        t1 = time.perf_counter()

        specials = self.tokenizer.special_ids
        eot = self.tokenizer.eot_id
        forced = params.forced_text.encode("utf-8")
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        out: list[int] = []
        reason = StopReason.LENGTH
        max_new = min(params.max_new_tokens, room)
        if max_new < params.max_new_tokens:
            reason = StopReason.CONTEXT
        # Draft only where verifying cannot change the answer: greedy, unconstrained, and on the
        # CPU (the CUDA path replays a captured one-token graph).
        speculate = params.draft_tokens > 0 and params.temperature <= 0 and self.device.type != "cuda"
        drafted = accepted = 0
        while len(out) < max_new:
            if forced:
                logits = self._constrain(logits, forced)
            token = self._choose(logits, params, generator, len(out))
            if token == eot:
                reason = StopReason.EOT
                break
            if token in specials:
                reason = StopReason.SPECIAL
                break
            out.append(token)
            if forced:
                forced = _consume(forced, self.tokenizer.token_bytes(token))
            if params.stop is not None and not forced and params.stop(out):
                reason = StopReason.STOP
                break
            if len(out) == max_new or cancelled():
                reason = StopReason.CANCELLED if len(out) < max_new else reason
                break
            draft = self._draft(prompt, out, self.drafts.budget(min(params.draft_tokens, max_new - len(out)))) \
                if speculate and not forced else []
            if not draft:
                logits = self._decode_one(slot, token)
                slot.ids.append(token)
                continue
            # One forward pass over the token and its draft: logits after each of them.
            ids = torch.tensor([token, *draft], dtype=torch.long, device=self.device)
            all_logits = self.model(ids, len(slot.ids), slot.cache)
            slot.ids.append(token)
            drafted += len(draft)
            agreed, stopped = 0, False
            for guess in draft:
                if guess == eot or guess in specials:
                    break  # never drafted: the model's own pick ends generation, as above
                if self._choose(all_logits[agreed], params, None, len(out)) != guess:
                    break  # the model's own choice comes from all_logits[agreed], next round
                slot.ids.append(guess)
                out.append(guess)
                agreed += 1
                if params.stop is not None and params.stop(out):
                    reason, stopped = StopReason.STOP, True
                    break
                if len(out) == max_new:
                    stopped = True
                    break
            accepted += agreed
            self.drafts.record(len(draft), agreed)
            if stopped:
                break
            logits = all_logits[agreed]
        result = self._result(out, reason, prompt, reused, len(prompt) - reused, t0, t1)
        result.drafted, result.accepted = drafted, accepted
        return result

    def _choose(self, logits: torch.Tensor, params: GenerationParams, generator, index: int) -> int:
        """The token at output position `index`: the model's pick, or the teacher's."""
        token = self._pick(self._mask(logits, params), params, generator)
        if params.teacher is not None:
            return params.teacher[index] if index < len(params.teacher) else self.tokenizer.eot_id
        return token

    def _mask(self, logits: torch.Tensor, params: GenerationParams) -> torch.Tensor:
        if params.exact_length:
            return logits.index_fill(0, self._special_tensor, float("-inf"))
        return logits

    @staticmethod
    def _draft(prompt: list[int], out: list[int], limit: int, ngram: int = 3) -> list[int]:
        """Tokens that followed the latest earlier occurrence of the last `ngram` tokens (of the
        prompt and the output), at most `limit`: code repeats its own identifiers and lines."""
        if limit <= 0:
            return []
        seq = prompt + out
        for n in range(ngram, 0, -1):
            if len(seq) <= n:
                continue
            tail = seq[-n:]
            first = tail[0]
            for start in range(len(seq) - n - 1, -1, -1):
                if seq[start] == first and seq[start : start + n] == tail:
                    follow = seq[start + n : start + n + limit]
                    if follow:
                        return follow
            if n == 2:
                break  # one token alone matches too much to be worth a verification pass
        return []

    def _decode_one(self, slot: _Slot, token: int) -> torch.Tensor:
        if self.device.type == "cuda":
            if slot.decoder is None:
                slot.decoder = GraphedDecoder(self.model, slot.cache)
            return slot.decoder(token, len(slot.ids))
        ids = torch.tensor([token], dtype=torch.long, device=self.device)
        return self.model(ids, len(slot.ids), slot.cache, last_only=True)[-1]

    def _result(self, out, reason, prompt, reused, computed, t0, t1) -> GenerationResult:
        t2 = time.perf_counter()
        return GenerationResult(
            ids=out, stop_reason=reason, prompt_tokens=len(prompt), reused_tokens=reused,
            computed_tokens=computed, prefill_ms=(t1 - t0) * 1e3, decode_ms=max(0.0, t2 - t1) * 1e3,
        )

    def _constrain(self, logits: torch.Tensor, forced: bytes) -> torch.Tensor:
        """Keep only tokens consistent with the bytes the output must start with."""
        allowed = self._allowed(forced)
        if not allowed:
            return logits
        masked = torch.full_like(logits, float("-inf"))
        idx = torch.tensor(allowed, device=logits.device)
        masked[idx] = logits[idx]
        return masked

    def _allowed(self, forced: bytes) -> list[int]:
        """Ids of the tokens that begin with `forced` or are a beginning of it (binary search in the
        sorted vocabulary, instead of a pass over all of it at every constrained step)."""
        keys, ids, by_bytes = self._vocab_index
        out = []
        # Healed indentation is the user's own: a token running on into more whitespace would
        # re-indent the line (and, while it is the likelier token, push the suggestion right).
        ends_in_space = forced[-1:].isspace()
        j = bisect.bisect_left(keys, forced)
        while j < len(keys) and keys[j].startswith(forced):
            if not (ends_in_space and keys[j][len(forced):len(forced) + 1].isspace()):
                out.append(ids[j])
            j += 1
        for n in range(1, len(forced)):
            out += by_bytes.get(forced[:n], ())
        return out

    @cached_property
    def _vocab_index(self) -> tuple[list[bytes], list[int], dict[bytes, list[int]]]:
        pairs = sorted((tb, i) for i, tb in enumerate(self._vocab_bytes) if tb)
        by_bytes: dict[bytes, list[int]] = {}
        for tb, i in pairs:
            by_bytes.setdefault(tb, []).append(i)
        return [tb for tb, _ in pairs], [i for _, i in pairs], by_bytes

    @cached_property
    def _special_tensor(self) -> torch.Tensor:
        ids = sorted({*self.tokenizer.special_ids, self.tokenizer.eot_id})
        return torch.tensor([i for i in ids if i < self.model.config.vocab_size], dtype=torch.long, device=self.device)

    @cached_property
    def _vocab_bytes(self) -> list[bytes]:
        return [self.tokenizer.token_bytes(i) for i in range(self.model.config.vocab_size)]

    @staticmethod
    def _pick(logits: torch.Tensor, params: GenerationParams, generator) -> int:
        if params.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < params.top_p
            probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _consume(forced: bytes, token: bytes) -> bytes:
    """What remains of the forced bytes after emitting `token`."""
    return forced[len(token):] if forced.startswith(token) else b""
