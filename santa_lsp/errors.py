"""One exception hierarchy; the LSP layer and the CLI map it to messages at the boundary."""

from __future__ import annotations


class SantaError(Exception):
    """Base of every error santa-lsp raises on purpose. `str(err)` is shown to the user."""


class ModelLoadError(SantaError):
    """The model could not be found, downloaded, read or validated."""

    def __init__(self, model: str, reason: str, fix: str = "") -> None:
        self.model, self.reason, self.fix = model, reason, fix
        text = f"cannot load model '{model}': {reason}"
        super().__init__(f"{text}. {fix}" if fix else text)


class ModelOfflineError(ModelLoadError):
    """A hub model is neither cached nor downloadable (offline or unreachable)."""


class TokenizerError(ModelLoadError):
    """The tokenizer lacks a FIM token or is unusable."""


class InvalidPosition(SantaError):
    """A cursor position outside the document (or inside a character)."""


# Also ValueErrors: a bad value is what they are, and `except ValueError` callers keep working.
class InvalidOption(SantaError, ValueError):
    """An option's value is unusable (an endpoint that is not an http(s) URL, an unknown FIM order)."""


class InvalidPrompt(SantaError, ValueError):
    """A prompt the model cannot run: empty, or longer than its context."""
