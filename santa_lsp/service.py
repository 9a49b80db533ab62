"""The completion pipeline, independent of LSP: typing-ahead cache -> context -> prompt ->
engine -> post-processing.

The server, the CLI, the benchmark and the evaluation all call `CompletionService.complete`;
it runs on the caller's thread and starts none. `prefetch` computes the suggestion for when
the last one is accepted: the server runs it as a background job of its one inference worker
(lsp/scheduler.py), which any request cancels. The service counts into a `Stats` registry
(stats.py): the server's, or its own when used alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from santa_lsp import context as ctxmod
from santa_lsp import postprocess
from santa_lsp.config import Options
from santa_lsp.engine import Engine, GenerationParams
from santa_lsp.engine.generate import GenerationResult, StopReason
from santa_lsp.engine.load import AUTO_QUANTIZE_PARAMS
from santa_lsp.errors import InvalidPosition
from santa_lsp.prompt import PromptBuilder
from santa_lsp.stats import Stats
from santa_lsp.suggestion import Suggestion
from santa_lsp.typeahead import TypeaheadCache

log = logging.getLogger(__name__)

# Service-level counters shown by `stats` (the registry holds the server's too).
_OWN_COUNTERS = ("requests", "model_runs", "suggestions", "prefetches", "typeahead_hits", "typeahead_misses")


class CompletionService:
    def __init__(self, engine: Engine, options: Options | None = None, interactive: bool = False,
                 stats: Stats | None = None) -> None:
        """`interactive`: a user waits for each answer (the server, `santa-lsp complete`), so
        `maxLatencyMs: -1` (automatic) means a time limit on CPU; elsewhere (evaluation,
        benchmarks: measurements) it means none. An explicit limit applies everywhere.

        `stats`: the registry to count in. A server passes its own and counts requests and
        suggestions where they enter (it sees those answered without the pipeline too); a
        service used alone counts them itself."""
        self.engine = engine
        self.options = options or Options()
        self.interactive = interactive
        self.counters = stats if stats is not None else Stats()
        self._entry_point = stats is None
        self.prompts = PromptBuilder(engine.tokenizer)
        self.typeahead = TypeaheadCache(stats=self.counters)
        self._lock = threading.Lock()  # guards the prompt windows and the typing-ahead cache

    @property
    def stats(self) -> dict[str, float]:
        """Counters since start: requests, model_runs, suggestions (non-empty answers),
        prefetches (completed), typeahead_hits, typeahead_misses, typeahead_hit_rate
        (hits / lookups, 0..1)."""
        return {**{name: self.counters[name] for name in _OWN_COUNTERS},
                "typeahead_hit_rate": self.counters.typeahead_hit_rate()}

    def forget(self, doc: str) -> None:
        """A document was closed: drop its prompt window and cached suggestions."""
        with self._lock:
            self.prompts.forget(doc)
            self.typeahead.forget(doc)

    def complete(
        self,
        text: str,
        cursor: int,
        doc: str = "",
        cancelled: Callable[[], bool] = lambda: False,
        options: Options | None = None,
        postprocessing: bool = True,
        reuse: bool = True,
        typeahead: bool = True,
    ) -> Suggestion | None:
        """The suggestion at character offset `cursor` of `text`, or None when there is none
        or `cancelled()` turned true.

        The typing-ahead cache answers only post-processed requests; `typeahead=False` always
        runs the model (benchmarks of the engine).
        """
        opts = options or self.options
        if not 0 <= cursor <= len(text):
            raise InvalidPosition(f"cursor offset {cursor} is outside the document (length {len(text)})")
        t0 = time.perf_counter()
        ctx = ctxmod.analyze(text, cursor, opts.mode, ctxmod.language_of(doc))
        if ctx is None or not opts.enable:
            return None
        key = dataclasses.astuple(opts)
        typeahead = typeahead and postprocessing
        self._count("requests")
        with self._lock:
            hit = self.typeahead.lookup(doc, text, cursor, key) if typeahead else None
        if hit is not None:
            self._count("suggestions")
            return Suggestion(hit.text, hit.replace_len, cursor, hit.mode, source="typeahead",
                              timings_ms={"total": (time.perf_counter() - t0) * 1e3})
        suggestion = self._run_model(text, cursor, ctx, doc, cancelled, opts, postprocessing, reuse, t0)
        if suggestion is None:
            return None
        self.counters.add("model_runs")
        if suggestion.text:
            self._count("suggestions")
        if typeahead:
            with self._lock:
                self.typeahead.store(doc, text, cursor, key, suggestion.text, suggestion.replace_len, suggestion.mode)
        return suggestion

    def prefetch(self, text: str, shown: Suggestion, doc: str = "", cancelled: Callable[[], bool] = lambda: False,
                 options: Options | None = None) -> bool:
        """Compute the suggestion for `text` with `shown` accepted and keep it in the typing-ahead
        cache, so that accepting is answered at once. Runs the model like `complete` (the server
        makes it a background job of its inference worker, which any request cancels); does
        nothing unless the `prefetch` option is on and `shown` is a model's non-empty answer.
        True when the model ran to the end (an empty answer is not kept)."""
        opts = options or self.options
        if not (opts.prefetch and opts.enable and shown.text and shown.source == "model"):
            return False
        accepted = text[:shown.cursor] + shown.text + text[shown.replace_end:]
        at = shown.cursor + len(shown.text)
        ctx = ctxmod.analyze(accepted, at, opts.mode, ctxmod.language_of(doc))
        if ctx is None:
            return False
        result = self._run_model(accepted, at, ctx, doc, cancelled, opts, True, True, time.perf_counter())
        if result is None or cancelled():
            return False
        self.counters.add("prefetches")
        with self._lock:
            self.typeahead.store(doc, accepted, at, dataclasses.astuple(opts), result.text, result.replace_len,
                                 result.mode)
        return True

    def _count(self, name: str) -> None:
        if self._entry_point:
            self.counters.add(name)

    def _run_model(self, text: str, cursor: int, ctx: ctxmod.Context, doc: str, cancelled: Callable[[], bool],
                   opts: Options, postprocessing: bool, reuse: bool, t0: float) -> Suggestion | None:
        """Prompt -> engine -> post-processing; None when cancelled."""
        with self._lock:
            budget = opts.effective_budget(self.engine.n_positions, self._slow_cpu())
            prompt = self.prompts.build(text, cursor, budget, opts.fim_order, opts.suffix_share, doc,
                                        heal=opts.token_healing)
        t1 = time.perf_counter()
        tok = self.engine.tokenizer
        healed = prompt.healed
        limit_ms = opts.latency_limit_ms(self._local_cpu())
        deadline = t0 + limit_ms / 1e3 if limit_ms > 0 else None
        time_limited = False

        def stop(ids: list[int]) -> bool:
            nonlocal time_limited
            text = tok.decode(ids)[len(healed):]
            # Past the time limit, stop at the first line break after a non-blank line (a
            # newline token may carry the next line's indentation): the lines shown are complete.
            if (deadline is not None and text.rstrip(" \t").endswith("\n") and text.strip()
                    and time.perf_counter() >= deadline):
                time_limited = True
                return True
            return postprocess.stop_early(text, ctx)

        params = GenerationParams(
            max_new_tokens=opts.max_new_tokens, temperature=opts.temperature, top_p=opts.top_p,
            forced_text=healed, stop=stop if postprocessing else None,
        )
        result = self.engine.generate(prompt.ids, params, key=doc, cancelled=cancelled, reuse=reuse)
        self._count_tokens(result)
        t2 = time.perf_counter()
        raw = tok.decode(result.ids)
        # Token healing re-generates the removed text; the suggestion starts at the cursor.
        raw = raw[len(healed):] if raw.startswith(healed) else ""
        if postprocessing:
            suggestion = postprocess.clean(raw, ctx,
                                           truncated=result.stop_reason in (StopReason.LENGTH, StopReason.CONTEXT))
        else:
            suggestion = Suggestion(raw)
        t3 = time.perf_counter()
        timings = {
            "context": (t1 - t0) * 1e3, "prefill": result.prefill_ms, "decode": result.decode_ms,
            "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3,
        }
        log.debug("completion %s reused=%d computed=%d gen=%d stop=%s healed=%r timings=%s", doc,
                  result.reused_tokens, result.computed_tokens, result.generated_tokens, result.stop_reason, healed,
                  {k: round(v, 1) for k, v in timings.items()})
        if result.stop_reason == StopReason.CANCELLED:
            return None
        time_limited = time_limited and result.stop_reason == StopReason.STOP
        if time_limited:
            log.debug("completion %s: stopped at a line break after maxLatencyMs=%d", doc, limit_ms)
        return dataclasses.replace(suggestion, cursor=cursor, mode=ctx.mode, raw=raw, healed=healed,
                                   generation=result, timings_ms=timings, time_limited=time_limited)

    def _count_tokens(self, result: GenerationResult) -> None:
        self.counters.add("reused_tokens", result.reused_tokens)
        self.counters.add("computed_tokens", result.computed_tokens)
        self.counters.add("generated_tokens", result.generated_tokens)

    def _slow_cpu(self) -> bool:
        """Whether an automatic context budget applies: a big model (the size from which `dtype:
        auto` quantizes) in an interactive service on this machine's CPU."""
        return self._local_cpu() and self.engine.model.config.n_params() >= AUTO_QUANTIZE_PARAMS

    def _local_cpu(self) -> bool:
        """Whether an automatic time limit applies: an interactive service whose model runs on
        this machine's CPU (not CUDA, not a remote endpoint)."""
        device = getattr(self.engine, "device", None)
        return self.interactive and isinstance(self.engine, Engine) and getattr(device, "type", None) == "cpu"
