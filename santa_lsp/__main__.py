import os
import sys

# `python -m santa_lsp` puts the current directory first on sys.path. An editor starts the
# server inside the user's project, where a file named like a standard module (numbers.py,
# typing.py) would shadow it for every import torch makes later. santa_lsp itself is already
# imported at this point, so the entry can go.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from santa_lsp.cli import main  # noqa: E402

raise SystemExit(main())
