"""The one suggestion type: made by post-processing (or the typing-ahead cache), returned by
`CompletionService.complete`, placed in the document by `lsp/items.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the engine imports torch; a suggestion does not need it
    from santa_lsp.engine.generate import GenerationResult


@dataclass
class Suggestion:
    """Insert `text` at `cursor`, replacing the `replace_len` characters after it. The other
    fields say how it was made (the pipeline fills them)."""

    text: str
    replace_len: int = 0
    cursor: int = 0
    mode: str = ""  # "single-line" | "multi-line"
    source: Literal["model", "typeahead"] = "model"
    raw: str = ""  # model output before post-processing (after the healed text)
    healed: str = ""  # text before the cursor the model re-generated (token healing)
    generation: GenerationResult | None = None  # None when answered from the typing-ahead cache
    timings_ms: dict[str, float] = field(default_factory=dict)
    time_limited: bool = False  # decoding stopped at a line break because maxLatencyMs ran out

    @property
    def replace_end(self) -> int:
        """Where the document resumes after the suggestion."""
        return self.cursor + self.replace_len
