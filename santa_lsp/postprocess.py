"""Turn raw model output into a suggestion worth showing: stop rules and filters."""

from __future__ import annotations

from santa_lsp.context import Context


def stop_early(text: str, ctx: Context) -> bool:
    """True once the generated text is certain to be cut here anyway (saves decode steps)."""
    if ctx.mode == "single-line":
        return "\n" in text
    lines = text.split("\n")
    # A complete line that dedents out of the block ends a multi-line suggestion.
    return len(lines) > 2 and any(_dedents(line, ctx) for line in lines[1:-1])


def _dedents(line: str, ctx: Context) -> bool:
    if not line.strip():
        return False
    indent = len(line) - len(line.lstrip())
    return indent < len(ctx.indent)


def clean(text: str, ctx: Context) -> str:
    """Cut, trim and filter `text` (to be inserted at the cursor); '' means show nothing."""
    text = text.replace("\r\n", "\n")
    if ctx.mode == "single-line":
        text = text.split("\n", 1)[0]
    else:
        text = _cut_block(text, ctx)
    text = _drop_suffix_overlap(text, ctx.line_suffix)
    text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
    if not text.strip():
        return ""
    return text


def _cut_block(text: str, ctx: Context) -> str:
    lines = text.split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if _dedents(line, ctx):
            break
        kept.append(line)
    return "\n".join(kept)


def _drop_suffix_overlap(text: str, line_suffix: str) -> str:
    """Accepting must not double what already follows the cursor (auto-closed brackets...)."""
    rest = line_suffix.strip()
    if not rest:
        return text
    first, nl, tail = text.partition("\n")
    if first.rstrip().endswith(rest):
        first = first.rstrip()[: -len(rest)]
    return first + nl + tail
