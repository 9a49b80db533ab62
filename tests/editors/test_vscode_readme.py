"""The VS Code README's images resolve inside the packaged extension (.vsix): relative paths
under editors/vscode that .vscodeignore lets into the package."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

VSCODE = Path(__file__).resolve().parents[2] / "editors" / "vscode"


def packaged(path: str) -> bool:
    """Whether .vscodeignore (ignore everything, then `!pattern` exceptions) keeps `path`."""
    keep = True
    for line in (VSCODE / ".vscodeignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        if pattern == "**" or fnmatch.fnmatch(path, pattern):
            keep = negate
    return keep


def test_readme_images_are_in_the_package():
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (VSCODE / "README.md").read_text())
    assert images
    for image in images:
        assert not image.startswith(("/", "..", "http:")), image
        if image.startswith("https:"):
            continue
        assert (VSCODE / image).is_file(), image
        assert packaged(image), f"{image} is left out of the .vsix by .vscodeignore"
