"""The completion pipeline, independent of LSP: typing-ahead cache -> context -> prompt ->
engine -> post-processing.

The server, the CLI, the benchmark and the evaluation all call `CompletionService.complete`.
`CompletionService.stats` reports the typing-ahead cache's hit rate (for `santa.status`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from santa_lsp import context as ctxmod
from santa_lsp import postprocess
from santa_lsp.config import Options
from santa_lsp.engine import Engine, GenerationParams, GenerationResult
from santa_lsp.errors import InvalidPosition
from santa_lsp.prompt import PromptBuilder
from santa_lsp.typeahead import TypeaheadCache

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """Insert `text` at `cursor`, replacing the document's text[cursor:replace_end]."""

    text: str
    cursor: int
    replace_end: int
    mode: str
    raw: str = ""  # model output before post-processing (after the healed text)
    generation: GenerationResult | None = None  # None when answered from the typing-ahead cache
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str = "model"  # "model" | "typeahead"
    healed: str = ""  # text before the cursor the model re-generated (token healing)
    time_limited: bool = False  # decoding stopped at a line break because maxLatencyMs ran out


class CompletionService:
    def __init__(self, engine: Engine, options: Options | None = None, interactive: bool = False) -> None:
        """`interactive`: a user waits for each answer (the server, `santa-lsp complete`), so
        `maxLatencyMs: -1` (automatic) means a time limit on CPU; elsewhere (evaluation,
        benchmarks: measurements) it means none. An explicit limit applies everywhere."""
        self.engine = engine
        self.options = options or Options()
        self.interactive = interactive
        self.prompts = PromptBuilder(engine.tokenizer)
        self.typeahead = TypeaheadCache()
        self._lock = threading.Lock()  # guards the prompt windows and the typing-ahead cache
        self._counts = {"requests": 0, "model_runs": 0, "suggestions": 0, "prefetches": 0}
        self._prefetch_cancel = threading.Event()  # set by every real request
        self._prefetch_thread: threading.Thread | None = None

    @property
    def stats(self) -> dict[str, float]:
        """Counters since start: requests, model_runs, suggestions (non-empty answers),
        prefetches (completed), typeahead_hits, typeahead_misses, typeahead_hit_rate
        (hits / lookups, 0..1)."""
        with self._lock:
            return {**self._counts, "typeahead_hits": self.typeahead.hits,
                    "typeahead_misses": self.typeahead.misses, "typeahead_hit_rate": self.typeahead.hit_rate}

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
    ) -> Completion | None:
        """The suggestion at character offset `cursor` of `text`, or None when there is none.

        The typing-ahead cache answers only post-processed requests; `typeahead=False` always
        runs the model (benchmarks of the engine).
        """
        opts = options or self.options
        if not 0 <= cursor <= len(text):
            raise InvalidPosition(f"cursor offset {cursor} is outside the document (length {len(text)})")
        self._prefetch_cancel.set()  # a real request: a background prefetch yields at its next step
        t0 = time.perf_counter()
        ctx = ctxmod.analyze(text, cursor, opts.mode, ctxmod.language_of(doc))
        if ctx is None or not opts.enable:
            return None
        key = dataclasses.astuple(opts)
        typeahead = typeahead and postprocessing
        with self._lock:
            self._counts["requests"] += 1
            hit = self.typeahead.lookup(doc, text, cursor, key) if typeahead else None
            if hit is not None:
                self._counts["suggestions"] += 1
                return Completion(hit.text, cursor, cursor + hit.replace_len, hit.mode, source="typeahead",
                                  timings_ms={"total": (time.perf_counter() - t0) * 1e3})
        completion = self._run_model(text, cursor, ctx, doc, cancelled, opts, postprocessing, reuse, t0)
        if completion is None:
            return None
        with self._lock:
            self._counts["model_runs"] += 1
            self._counts["suggestions"] += bool(completion.text)
            if typeahead:
                self.typeahead.store(doc, text, cursor, key, completion.text, completion.replace_end - cursor,
                                     completion.mode)
        if typeahead and opts.prefetch and completion.text:
            self._prefetch(text, cursor, completion, doc, opts, key)
        return completion

    def _run_model(self, text: str, cursor: int, ctx: ctxmod.Context, doc: str, cancelled: Callable[[], bool],
                   opts: Options, postprocessing: bool, reuse: bool, t0: float) -> Completion | None:
        """Prompt -> engine -> post-processing; None when cancelled."""
        with self._lock:
            budget = opts.effective_budget(self.engine.n_positions)
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
        t2 = time.perf_counter()
        raw = tok.decode(result.ids)
        # Token healing re-generates the removed text; the suggestion starts at the cursor.
        raw = raw[len(healed):] if raw.startswith(healed) else ""
        if postprocessing:
            suggestion = postprocess.clean(raw, ctx, truncated=result.stop_reason in ("length", "context"))
        else:
            suggestion = postprocess.Suggestion(raw)
        t3 = time.perf_counter()
        timings = {
            "context": (t1 - t0) * 1e3, "prefill": result.prefill_ms, "decode": result.decode_ms,
            "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3,
        }
        log.debug("completion %s reused=%d computed=%d gen=%d stop=%s healed=%r timings=%s", doc,
                  result.reused_tokens, result.computed_tokens, result.generated_tokens, result.stop_reason, healed,
                  {k: round(v, 1) for k, v in timings.items()})
        if result.stop_reason == "cancelled":
            return None
        if time_limited and result.stop_reason == "stop":
            log.debug("completion %s: stopped at a line break after maxLatencyMs=%d", doc, limit_ms)
        return Completion(suggestion.text, cursor, cursor + suggestion.replace_len, ctx.mode, raw, result, timings,
                          healed=healed, time_limited=time_limited and result.stop_reason == "stop")

    def _local_cpu(self) -> bool:
        """Whether an automatic time limit applies: an interactive service whose model runs on
        this machine's CPU (not CUDA, not a remote endpoint)."""
        device = getattr(self.engine, "device", None)
        return self.interactive and isinstance(self.engine, Engine) and getattr(device, "type", None) == "cpu"

    def _prefetch(self, text: str, cursor: int, shown: Completion, doc: str, opts: Options, key: tuple) -> None:
        """In the background, compute the suggestion for the document with `shown` accepted and
        keep it in the typing-ahead cache, so that accepting is answered at once. Any real
        request cancels it (at its next decode step)."""
        accepted = text[:cursor] + shown.text + text[shown.replace_end:]
        at = cursor + len(shown.text)
        ctx = ctxmod.analyze(accepted, at, opts.mode, ctxmod.language_of(doc))
        if ctx is None:
            return
        cancel = threading.Event()
        self._prefetch_cancel = cancel

        def work() -> None:
            try:
                result = self._run_model(accepted, at, ctx, doc, cancel.is_set, opts, True, True,
                                         time.perf_counter())
            except Exception:  # a background nicety must never take anything down
                log.exception("prefetch failed")
                return
            if result is None or cancel.is_set():
                return
            with self._lock:
                self._counts["prefetches"] += 1
                self.typeahead.store(doc, accepted, at, key, result.text, result.replace_end - at, result.mode)

        self._prefetch_thread = threading.Thread(target=work, name="santa-prefetch", daemon=True)
        self._prefetch_thread.start()
