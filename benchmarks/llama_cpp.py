"""santa-lsp against llama.cpp on the same CPU cores (issue 16), one unattended run:

    python benchmarks/llama_cpp.py [--keystrokes 40] [--psm-every 4] [--pause-pid-file FILE]

1. builds llama.cpp (llama-server, llama-bench, llama-quantize) from the `llama-cpp-python` sdist
   on the package registry (benchmarks/llama_cpp_build.sh; ~10+ minutes on 2 cores, reused after);
2. saves the 1.1B SantaCoder shape with random weights (seed 0, as benchmarks/regenerate.py does)
   and converts it to GGUF with llama.cpp's own converter, then Q8_0 and Q4_0 with llama-quantize;
3. replays a user typing one line into a ~1,000-token file (the stdlib's textwrap.py), every keystroke
   asking every setup for exactly 16 new tokens (`ignore_eos` on llama-server, `exact_length` on
   ours), setups interleaved keystroke by keystroke so all see the same machine load:
   llama-server `/infill` as llama.vim sends it (PSM, `cache_prompt`, the current line as `prompt`)
   and with `--spm-infill`, Q8_0 and Q4_0, `-t 2`; santa-lsp's Engine in-process (SPM prompt from
   the product's PromptBuilder, KV reuse, speculative drafting as shipped) in int8, int4 with
   torch's kernel and int4 with the native kernel (also with drafting off), 2 torch threads. A last setup,
   `int4-native perfect`, is the perfect-model replay: the true rest of the line decides the
   tokens (`GenerationParams.teacher`), so drafts and the end-of-line stop are realistic, and a
   keystroke that types the next character of the previous suggestion is answered from it (the
   service's typing-ahead cache; counted as 0 ms, while the model is still called so that its
   own time is reported as "model call p50").
4. prints p50/p90 per keystroke, decode ms/token and prefill tok/s per setup, ratios and the load
   average. `--pause-pid-file` stops that process (SIGSTOP) for the timed part only and always
   resumes it (SIGCONT), also if this script dies: a watchdog shell resumes it when we exit.

Not run in CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("SANTA_LLAMA_CACHE", Path.home() / ".cache" / "santa-llama-cpp"))
BIN = CACHE / "build" / "bin"
SRC = CACHE / "src" / "vendor" / "llama.cpp"
SYNTH = Path("/tmp/santacoder-synth")
# A ~1,000-token Python file that every machine has: the standard library's textwrap.py.
DOC = Path(os.__file__).parent / "textwrap.py"
NEW_TOKENS = 16


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build() -> None:
    subprocess.run([str(ROOT / "benchmarks" / "llama_cpp_build.sh")], check=True)


def make_synthetic(path: Path) -> None:
    if (path / "model.safetensors").is_file():
        return
    subprocess.run([sys.executable, "-c", (
        "import shutil, sys; from pathlib import Path\n"
        "from santa_lsp.engine.model import PRESETS, GPTBigCode, init_random\n"
        "from santa_lsp.engine.weights import save_gpt_bigcode\n"
        "from santa_lsp.engine.hub import BUNDLED_DIR\n"
        "p = Path(sys.argv[1]); save_gpt_bigcode(init_random(GPTBigCode(PRESETS['santacoder'])), p)\n"
        "shutil.copy(BUNDLED_DIR / 'tokenizer.json', p / 'tokenizer.json')\n"), str(path)], check=True, cwd=ROOT)


# The converter hashes how the tokenizer splits a test string to pick llama.cpp's pre-tokenizer and
# rejects hashes it does not know (ours is the bundled tokenizer's). SantaCoder's own tokenizer
# maps to "starcoder" there; register that choice at conversion time instead of editing anything.
_CONVERT = """
import runpy, sys
sys.path[:0] = [sys.argv[1] + "/gguf-py", sys.argv[1]]
from conversion.base import TextModel
TextModel.get_vocab_base_pre = lambda self, tokenizer: "starcoder"
script = sys.argv[1] + "/convert_hf_to_gguf.py"
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
"""


def convert(ckpt: Path, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    f16 = out / "santacoder-synth-f16.gguf"
    if not f16.is_file():
        tmp = f16.with_suffix(".tmp")
        subprocess.run([sys.executable, "-c", _CONVERT, str(SRC), str(ckpt), "--outtype", "f16", "--outfile", str(tmp)],
                       check=True)
        tmp.rename(f16)
    files = {}
    for q in ("Q8_0", "Q4_0"):
        path = out / f"santacoder-synth-{q}.gguf"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            subprocess.run([str(BIN / "llama-quantize"), str(f16), str(tmp), q, "2"], check=True,
                           stdout=subprocess.DEVNULL)
            tmp.rename(path)
        files[q] = path
    return files


# -- the typing ------------------------------------------------------------------------------


@dataclass
class Key:
    text: str  # the document after the keystroke
    cursor: int  # character offset of the cursor
    rest: str  # what the user will type next on this line (the true continuation)


def typing(path: Path, tokenizer: Any, tokens: int, at: float, keystrokes: int) -> list[Key]:
    """Cut the file to ~`tokens` tokens, empty the line at fraction `at` of it (after its
    indentation) and type it back one character per keystroke (the first `keystrokes`)."""
    text = path.read_text(encoding="utf-8")
    ids = tokenizer.encode(text)[:tokens]
    text = tokenizer.decode(ids)
    text = text[: text.rfind("\n") + 1]
    lines = text.splitlines(keepends=True)
    # The line nearest `at` (by characters) with at least 30 characters to type.
    target = int(len(text) * at)
    pos, best = 0, None
    for i, line in enumerate(lines):
        if len(line.strip()) >= 30 and (best is None or abs(pos - target) < abs(best[1] - target)):
            best = (i, pos)
        pos += len(line)
    assert best is not None, f"{path}: no line long enough"
    i, start = best
    line = lines[i].rstrip("\n")
    indent = len(line) - len(line.lstrip())
    before, typed, after = text[: start + indent], line[indent:], text[start + len(line):]
    return [Key(before + typed[: n + 1] + after, len(before) + n + 1, typed[n + 1:])
            for n in range(min(keystrokes, len(typed)))]


# -- the setups ------------------------------------------------------------------------------


@dataclass
class Sample:
    ms: float
    prompt_n: int = 0  # tokens computed before decoding
    prefill_ms: float = 0.0
    decoded: int = 0
    decode_ms: float = 0.0
    hit: bool = False  # answered from the previous suggestion (typing-ahead): counted as 0 ms
    call_ms: float = 0.0  # the model call's own time (made even on a hit, to measure it)
    drafted: int = 0
    accepted: int = 0


@dataclass
class Setup:
    name: str
    run: Callable[[Key], Sample]
    every: int = 1
    samples: list[Sample] = field(default_factory=list)
    first: Sample | None = None  # the first keystroke: a cold prefill, reported apart


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, model: Path, spm: bool, threads: int) -> None:
        self.port = free_port()
        cmd = [str(BIN / "llama-server"), "-m", str(model), "-t", str(threads), "-tb", str(threads), "-c", "2048",
               "-np", "1", "--host", "127.0.0.1", "--port", str(self.port), "--no-webui"]
        if spm:
            cmd.append("--spm-infill")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"llama-server did not start: {' '.join(cmd)}")
            time.sleep(0.5)

    def infill(self, key: Key) -> Sample:
        # As llama.vim sends it: the lines before the cursor line as input_prefix, the cursor line
        # up to the cursor as prompt, the rest of the line and the lines after as input_suffix.
        line_start = key.text.rfind("\n", 0, key.cursor) + 1
        body = {"input_prefix": key.text[:line_start], "prompt": key.text[line_start:key.cursor],
                "input_suffix": key.text[key.cursor:], "input_extra": [], "n_predict": NEW_TOKENS,
                "ignore_eos": True, "cache_prompt": True, "top_k": 1, "samplers": ["top_k"], "stream": False}
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/infill", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            res = json.loads(r.read())
        ms = (time.perf_counter() - t) * 1e3
        tm = res["timings"]
        return Sample(ms, tm["prompt_n"], tm["prompt_ms"], tm["predicted_n"], tm["predicted_ms"], call_ms=ms)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def santa_setup(name: str, engine: Any, builder: Any, perfect: bool = False, draft_tokens: int | None = None) -> Setup:
    from santa_lsp.engine import GenerationParams
    from santa_lsp.engine.generate import DraftRate

    state = {"suggestion": ""}
    rate = DraftRate()  # its own acceptance record: setups that share an engine draft apart

    def run(key: Key) -> Sample:
        hit = False
        if perfect:
            typed = key.text[key.cursor - 1]
            hit = state["suggestion"][:1] == typed and len(state["suggestion"]) > 1
            state["suggestion"] = state["suggestion"][1:] if hit else ""
        t = time.perf_counter()
        prompt = builder.build(key.text, key.cursor, 2048, "spm", 0.25, "doc", heal=False).ids
        if perfect:
            teacher = engine.tokenizer.encode(key.rest + "\n")[:NEW_TOKENS]
            params = GenerationParams(max_new_tokens=NEW_TOKENS, teacher=teacher,
                                      stop=lambda ids: "\n" in engine.tokenizer.decode(ids))
        else:
            params = GenerationParams(max_new_tokens=NEW_TOKENS, exact_length=True)
        if draft_tokens is not None:
            params.draft_tokens = draft_tokens
        # Its own KV slot: setups that share an engine do not help each other.
        engine.drafts = rate
        r = engine.generate(prompt, params, key=name)
        ms = (time.perf_counter() - t) * 1e3
        if perfect and not hit:
            state["suggestion"] = engine.tokenizer.decode(r.ids).split("\n")[0]
        if not perfect:
            assert len(r.ids) == NEW_TOKENS, (name, len(r.ids), r.stop_reason)
        return Sample(0.0 if hit else ms, r.computed_tokens, r.prefill_ms, len(r.ids), r.decode_ms, hit, ms,
                      r.drafted, r.accepted)

    return Setup(name, run)


def load_santa(ckpt: Path, threads: int, kinds: list[str]) -> tuple[dict[str, Any], Any, dict[str, float]]:
    """One Engine per kind ('int8', 'int4-torch', 'int4-native'), from one fp32 load."""
    import torch

    from santa_lsp.config import Options
    from santa_lsp.engine import Engine, load_engine, prepare_model

    base = load_engine(Options(model=str(ckpt), dtype="float32", threads=threads, device="cpu")).engine
    torch.set_num_threads(threads)
    engines, load_s = {}, {}
    for kind in kinds:
        dtype, _, kernel = kind.partition("-")
        os.environ["SANTA_LSP_NATIVE_KERNELS"] = "0" if kernel == "torch" else "1"
        t = time.perf_counter()
        model = prepare_model(copy.deepcopy(base.model), "cpu", dtype)
        load_s[kind] = time.perf_counter() - t
        engines[kind] = Engine(model, base.tokenizer, name=kind)
    os.environ.pop("SANTA_LSP_NATIVE_KERNELS", None)
    return engines, base.tokenizer, load_s


# -- pausing the background job ----------------------------------------------------------------


def pause(pid_file: Path | None) -> Callable[[], None]:
    """SIGSTOP the process in `pid_file`; returns the resume function. A watchdog shell resumes
    it when this process exits however it exits (even SIGKILL), and SIGTERM/SIGINT exit cleanly."""
    if pid_file is None or not pid_file.is_file():
        return lambda: None
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except OSError:
        return lambda: None
    subprocess.Popen(["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; kill -CONT {pid}"],
                     start_new_session=True)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    os.kill(pid, signal.SIGSTOP)
    log(f"paused pid {pid}")

    def resume() -> None:
        try:
            os.kill(pid, signal.SIGCONT)
            log(f"resumed pid {pid}")
        except OSError:
            pass

    return resume


# -- report --------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else float("nan")


def report(setups: list[Setup], meta: dict[str, Any]) -> str:
    rows = ["| setup | keystrokes | p50 per keystroke | p90 | model call p50 | decode ms/token "
            "| prefill tok/s (cold, first key) | tokens computed per call (p50) |", "|---|---|---|---|---|---|---|---|"]
    p50: dict[str, float] = {}
    notes: list[str] = []
    for s in setups:
        ms = [x.ms for x in s.samples]
        p50[s.name] = pct(ms, 0.5)
        dec = [x for x in s.samples if x.decoded]
        per_tok = sum(x.decode_ms for x in dec) / max(1, sum(x.decoded for x in dec))
        cold = s.first
        prefill = "-"
        if cold and cold.prefill_ms:
            prefill = f"{cold.prompt_n / cold.prefill_ms * 1e3:.0f} ({cold.prompt_n} tok)"
        computed = statistics.median([x.prompt_n for x in dec] or [0])
        rows.append(f"| {s.name} | {len(ms)} | {p50[s.name] / 1e3:.2f} s | {pct(ms, 0.9) / 1e3:.2f} s | "
                    f"{pct([x.call_ms for x in s.samples], 0.5) / 1e3:.2f} s | {per_tok:.1f} | {prefill} | "
                    f"{computed:.0f} |")
        hits, drafted = sum(x.hit for x in s.samples), sum(x.drafted for x in s.samples)
        if hits or drafted:
            notes.append(f"- {s.name}: {hits} of {len(ms)} keystrokes answered by typing-ahead; "
                         f"{drafted} tokens drafted, {sum(x.accepted for x in s.samples)} accepted, "
                         f"{sum(x.decoded for x in s.samples)} generated")
    best = next((s.name for s in setups if s.name == "santa int4-native"), setups[-1].name)
    lines = ["", f"p50 per keystroke relative to `{best}` (how many times slower):"]
    for s in setups:
        if s.name != best and p50[best] > 0:
            lines.append(f"- {s.name}: {p50[s.name] / p50[best]:.2f}x")
    head = [f"load average: start {meta['load_start']}, end {meta['load_end']}; paused: {meta['paused']}; "
            f"threads {meta['threads']}; keystrokes {meta['keystrokes']} ({meta['doc']}, prompt ~{meta['doc_tokens']} "
            f"tokens, {NEW_TOKENS} new tokens each); santa-lsp quantize seconds {meta['quantize_s']}", ""]
    return "\n".join(head + rows + ([""] + notes if notes else []) + lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keystrokes", type=int, default=40)
    ap.add_argument("--psm-every", type=int, default=4, help="PSM llama-server only every n-th keystroke (slow)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--doc-tokens", type=int, default=1000)
    ap.add_argument("--santa", default="int8,int4-torch,int4-native", help="santa-lsp kinds")
    ap.add_argument("--llama", default="psm:Q8_0,psm:Q4_0,spm:Q8_0,spm:Q4_0", help="llama-server setups")
    ap.add_argument("--no-perfect", action="store_true", help="skip the perfect-model replay setup")
    ap.add_argument("--pause-pid-file", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as santa_lsp/__init__ does for the product
    make_synthetic(SYNTH)
    ggufs: dict[str, Path] = {}
    if a.llama:
        build()
        ggufs = convert(SYNTH, CACHE / "gguf")

    from santa_lsp.prompt import PromptBuilder

    kinds = [k for k in a.santa.split(",") if k]
    engines, tokenizer, quantize_s = load_santa(SYNTH, a.threads, kinds)
    keys = typing(a.doc, tokenizer, a.doc_tokens, 0.74, a.keystrokes)
    builder = PromptBuilder(tokenizer)
    setups = []
    servers: list[LlamaServer] = []
    try:
        for spec in (x for x in a.llama.split(",") if x):
            order, quant = spec.split(":")
            server = LlamaServer(ggufs[quant], order == "spm", a.threads)
            servers.append(server)
            name = f"llama-server {'--spm-infill' if order == 'spm' else 'PSM (llama.vim)'} {quant}"
            setups.append(Setup(name, server.infill, a.psm_every if order == "psm" else 1))
        setups += [santa_setup(f"santa {k}", engines[k], builder) for k in kinds]
        if "int4-native" in engines:  # what speculative drafting costs where random weights reject the drafts
            setups.append(santa_setup("santa int4-native, no drafting", engines["int4-native"], builder,
                                      draft_tokens=0))
        if not a.no_perfect and "int4-native" in engines:
            setups.append(santa_setup("santa int4-native perfect", engines["int4-native"], builder, perfect=True))
        # Warm-up on another file region is not wanted: the first keystroke is each setup's cold
        # prefill of the whole prompt, reported apart and left out of the percentiles.
        resume = pause(a.pause_pid_file)
        load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
        try:
            t0 = time.perf_counter()
            for i, key in enumerate(keys):
                for s in setups:
                    if i == 0:
                        s.first = s.run(key)
                    elif i % s.every == 0:
                        s.samples.append(s.run(key))
                if i % 5 == 0:
                    log(f"  keystroke {i + 1}/{len(keys)}, {time.perf_counter() - t0:.0f}s, "
                        f"load {os.getloadavg()[0]:.2f}")
        finally:
            load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
            resume()
    finally:
        for server in servers:
            server.close()
    meta = {"load_start": load_start, "load_end": load_end, "paused": str(a.pause_pid_file or "nothing"),
            "threads": a.threads, "keystrokes": len(keys), "doc": a.doc.name, "doc_tokens": a.doc_tokens,
            "quantize_s": {k: round(v, 1) for k, v in quantize_s.items()}}
    print(report(setups, meta))
    if a.json:
        a.json.write_text(json.dumps({"meta": meta, "setups": {s.name: {"first": vars(s.first) if s.first else None,
                                                                       "samples": [vars(x) for x in s.samples]}
                                                              for s in setups}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
