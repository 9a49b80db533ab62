"""The completion pipeline, independent of LSP: context -> prompt -> engine -> post-processing.

The server, the CLI, the benchmark and the evaluation all call `CompletionService.complete`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from santa_lsp import context as ctxmod
from santa_lsp import postprocess
from santa_lsp.config import Options
from santa_lsp.engine import Engine, GenerationParams, GenerationResult
from santa_lsp.errors import InvalidPosition
from santa_lsp.prompt import PromptBuilder

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """Insert `text` at `cursor`, replacing the document's text[cursor:replace_end]."""

    text: str
    cursor: int
    replace_end: int
    mode: str
    raw: str = ""  # model output before post-processing
    generation: GenerationResult | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class CompletionService:
    def __init__(self, engine: Engine, options: Options | None = None) -> None:
        self.engine = engine
        self.options = options or Options()
        self.prompts = PromptBuilder(engine.tokenizer)

    def forget(self, doc: str) -> None:
        """A document was closed: drop its prompt window."""
        self.prompts.forget(doc)

    def complete(
        self,
        text: str,
        cursor: int,
        doc: str = "",
        cancelled: Callable[[], bool] = lambda: False,
        options: Options | None = None,
        postprocessing: bool = True,
        reuse: bool = True,
    ) -> Completion | None:
        """The suggestion at character offset `cursor` of `text`, or None when there is none."""
        opts = options or self.options
        if not 0 <= cursor <= len(text):
            raise InvalidPosition(f"cursor offset {cursor} is outside the document (length {len(text)})")
        t0 = time.perf_counter()
        ctx = ctxmod.analyze(text, cursor, opts.mode)
        if ctx is None or not opts.enable:
            return None
        budget = opts.effective_budget(self.engine.n_positions)
        prompt = self.prompts.build(text, cursor, budget, opts.fim_order, opts.suffix_share, doc)
        t1 = time.perf_counter()
        tok = self.engine.tokenizer
        healed = prompt.healed

        def stop(ids: list[int]) -> bool:
            return postprocess.stop_early(tok.decode(ids)[len(healed):], ctx)

        params = GenerationParams(
            max_new_tokens=opts.max_new_tokens, temperature=opts.temperature, top_p=opts.top_p,
            forced_text=healed, stop=stop if postprocessing else None,
        )
        result = self.engine.generate(prompt.ids, params, key=doc, cancelled=cancelled, reuse=reuse)
        t2 = time.perf_counter()
        raw = tok.decode(result.ids)
        # Token healing re-generates the removed text; the suggestion starts at the cursor.
        raw = raw[len(healed):] if raw.startswith(healed) else ""
        text_out = postprocess.clean(raw, ctx) if postprocessing else raw
        t3 = time.perf_counter()
        timings = {
            "context": (t1 - t0) * 1e3, "prefill": result.prefill_ms, "decode": result.decode_ms,
            "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3,
        }
        log.debug("completion %s reused=%d computed=%d gen=%d stop=%s timings=%s", doc, result.reused_tokens,
                  result.computed_tokens, result.generated_tokens, result.stop_reason,
                  {k: round(v, 1) for k, v in timings.items()})
        if result.stop_reason == "cancelled":
            return None
        return Completion(text_out, cursor, cursor, ctx.mode, raw, result, timings)
