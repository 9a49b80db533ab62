"""Keystroke-replay benchmark: what a user typing in an editor would wait for.

Real source files are re-typed character by character (newlines and the occasional typo
with its backspace included) and a completion is requested after every keystroke, as an
editor with zero debounce would, through `CompletionService.complete`, the server's
pipeline. All variants run interleaved, keystroke by keystroke, on the same weights:

- `ours`       the product: SPM prompt, KV-cache reuse, the chosen dtype, typing-ahead cache
- `reuse-off`  the same, recomputing the whole prompt at every keystroke
- `psm`        the same with PSM order (the suffix after the cursor is recomputed each time)
- `fp32`       the same as `ours` in float32 (only when `ours` runs in another dtype)
- `baseline`   SantaCoder's model card: transformers `GPTBigCodeForCausalLM.generate` on the
               full (PSM) prompt at every keystroke, greedy, in float32
- `remote`, `remote-psm`  with `--endpoint`: the same pipeline through an OpenAI-compatible
               server (vLLM) serving the same model, SPM and PSM; reused tokens are the
               server's prefix-cache hits at that keystroke (vLLM's /metrics counters)

Every model run generates exactly `--max-new-tokens` tokens (end-of-text suppressed, no stop
rule) so that early stops flatter no one. Decode time is printed next to its physical floor:
bytes of weights read per token over the memory bandwidth measured in the same run.
`--lsp` also drives `santa-lsp serve --stdio` to measure the protocol overhead.

    python -m benchmarks.keystrokes [FILE...] [--model bundled] [--dtype int8] [--lsp]   # from the repository root

Results: benchmarks/RESULTS.md (`python benchmarks/regenerate.py`); `tests/bench` runs a seconds-long
slice in CI. The `baseline` variant needs transformers (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.lsp_client import REPO, RawClient, server_env
from santa_lsp.config import Options, add_option_arguments, options_from_args
from santa_lsp.engine import Engine, GenerationResult, load_engine, prepare_model
from santa_lsp.engine.model import GPTBigCode
from santa_lsp.prompt import PromptBuilder
from santa_lsp.service import CompletionService
from santa_lsp.stats import percentile

PROG = "python -m benchmarks.keystrokes"
DEFAULT_MODULES = ("textwrap", "shlex", "json.decoder")
HELDOUT_DIR = REPO / "tests" / "data" / "heldout"


# -- typing replay ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Keystroke:
    doc: str
    text: str  # the document after the keystroke
    cursor: int
    key: str  # the character typed, or "\b" for a backspace


def default_files() -> list[Path]:
    paths = []
    for name in DEFAULT_MODULES:
        src = inspect.getsourcefile(importlib.import_module(name))
        if src:
            paths.append(Path(src))
    return paths


def typing_session(path: Path, source: str, chars: int, rng: random.Random, typo_rate: float) -> list[Keystroke]:
    """Remove the lines holding about `chars` characters from a line a quarter to half into the
    file, then type them back as in an editor that auto-indents: one keystroke per character, a
    newline brings the next line's indentation with it, and a typo (a wrong letter, then
    backspace) precedes a character at `typo_rate`."""
    line_starts = [0] + [i + 1 for i, c in enumerate(source) if c == "\n" and i + 1 < len(source)]
    candidates = [s for s in line_starts if len(source) // 4 <= s <= len(source) // 2
                  and source[s:source.find("\n", s)].strip()] or line_starts
    start = rng.choice(candidates)
    start += len(source[start:]) - len(source[start:].lstrip(" \t"))  # the line's indentation stays
    # End the region at a line end, so the cursor is never just before a word (no suggestion there).
    end = source.find("\n", start + chars)
    end = end if end >= 0 else len(source)
    before, after = source[:start], source[end:]
    doc = str(path)
    keys: list[Keystroke] = []
    typed = ""
    i = start
    while i < end:
        chunk = source[i]
        if chunk == "\n":  # Enter: the editor adds the next line's indentation
            j = i + 1
            while j < end and source[j] in " \t":
                j += 1
            chunk = source[i:j]
        elif typo_rate > 0 and chunk.isalnum() and rng.random() < typo_rate:
            wrong = rng.choice("abcdefghijklmnopqrstuvwxyz")
            keys.append(Keystroke(doc, before + typed + wrong + after, len(before) + len(typed) + 1, wrong))
            keys.append(Keystroke(doc, before + typed + after, len(before) + len(typed), "\b"))
        typed += chunk
        i += len(chunk)
        keys.append(Keystroke(doc, before + typed + after, len(before) + len(typed), chunk[0]))
    return keys


def replay(paths: list[Path], keystrokes: int, seed: int, typo_rate: float) -> list[Keystroke]:
    """About `keystrokes` keystrokes spread over the files, one typing session per file."""
    rng = random.Random(seed)
    per_file = max(1, keystrokes // max(1, len(paths)))
    keys: list[Keystroke] = []
    for path in paths:
        source = path.read_text(encoding="utf-8", errors="replace")
        # Typos add two keystrokes each; aim the character count so the total stays near the target.
        chars = max(1, round(per_file / (1 + 2 * typo_rate * 0.8)))
        keys += typing_session(path, source, chars, rng, typo_rate)[:per_file]
    return keys[:keystrokes]


# -- variants --------------------------------------------------------------------------------
@dataclass
class Sample:
    latency_ms: float
    typeahead: bool = False
    computed: int = 0
    reused: int = 0
    generated: int = 0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0


@dataclass
class Variant:
    name: str
    what: str
    samples: list[Sample] = field(default_factory=list)
    every: int = 1  # runs on every n-th keystroke (slow variants on big models)

    def run(self, key: Keystroke) -> Sample:
        raise NotImplementedError


class FixedLengthEngine(Engine):
    """An Engine whose every generation is exactly max_new_tokens long (for fair timing)."""

    def generate(self, prompt, params, key="", cancelled=lambda: False, reuse=True) -> GenerationResult:
        params = dataclasses.replace(params, stop=None, exact_length=True)
        return super().generate(prompt, params, key, cancelled, reuse)


class ServiceVariant(Variant):
    def __init__(self, name: str, what: str, model: GPTBigCode, tokenizer, opts: Options, reuse: bool,
                 fixed: bool = True) -> None:
        super().__init__(name, what)
        engine_cls = FixedLengthEngine if fixed else Engine
        # Each variant has its own cache slots (they would evict each other) over shared weights.
        self.service = CompletionService(engine_cls(model, tokenizer, cache_slots=opts.cache_slots), opts)
        self.reuse = reuse

    def run(self, key: Keystroke) -> Sample:
        t0 = time.perf_counter()
        c = self.service.complete(key.text, key.cursor, doc=key.doc, reuse=self.reuse)
        ms = (time.perf_counter() - t0) * 1e3
        if c is None:
            return Sample(ms)
        if c.generation is None:
            return Sample(ms, typeahead=True)
        g = c.generation
        return Sample(ms, False, g.computed_tokens, g.reused_tokens, g.generated_tokens, g.prefill_ms, g.decode_ms)


class BaselineVariant(Variant):
    """transformers generate on the full PSM prompt (as on SantaCoder's model card), on the
    twin's device and dtype."""

    def __init__(self, hf_model: Any, tokenizer, opts: Options, n_positions: int) -> None:
        dtype = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(hf_model.dtype, str(hf_model.dtype))
        super().__init__("baseline", f"transformers generate, full prompt, {dtype}")
        self.hf, self.opts, self.n_positions = hf_model, opts, n_positions
        self.prompts = PromptBuilder(tokenizer)
        self.eot = tokenizer.eot_id

    def run(self, key: Keystroke) -> Sample:
        t0 = time.perf_counter()
        budget = self.opts.effective_budget(self.n_positions)
        prompt = self.prompts.build(key.text, key.cursor, budget, "psm", self.opts.suffix_share, key.doc, heal=False)
        ids = torch.tensor([prompt.ids], device=self.hf.device)
        n = self.opts.max_new_tokens
        with torch.inference_mode():
            out = self.hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                   do_sample=False, pad_token_id=self.eot, eos_token_id=self.eot)
        ms = (time.perf_counter() - t0) * 1e3
        return Sample(ms, False, len(prompt.ids), 0, out.shape[1] - ids.shape[1])


class FixedLengthRemote:
    """A RemoteEngine whose every generation is exactly max_new_tokens long (vLLM: ignore_eos)."""

    def __init__(self, engine: Any) -> None:
        self.inner = engine
        self.tokenizer, self.n_positions, self.name = engine.tokenizer, engine.n_positions, engine.name

    def generate(self, prompt, params, key="", cancelled=lambda: False, reuse=True) -> GenerationResult:
        params = dataclasses.replace(params, stop=None, exact_length=True)
        return self.inner.generate(prompt, params, key, cancelled, reuse)


class RemoteVariant(Variant):
    """The pipeline through a remote server; computed/reused tokens from its prefix-cache counters."""

    def __init__(self, name: str, what: str, engine: Any, opts: Options) -> None:
        super().__init__(name, what)
        self.service = CompletionService(FixedLengthRemote(engine), opts)
        self.engine = engine
        self.cache_queries = self.cache_hits = 0

    def prefix_cache(self) -> tuple[float, float]:
        """vLLM's prefix-cache counters (tokens queried, tokens hit); zeros elsewhere."""
        m = self.engine.server_metrics()
        return m.get("vllm:prefix_cache_queries_total", 0.0), m.get("vllm:prefix_cache_hits_total", 0.0)

    def run(self, key: Keystroke) -> Sample:
        q0, h0 = self.prefix_cache()
        t0 = time.perf_counter()
        c = self.service.complete(key.text, key.cursor, doc=key.doc)
        ms = (time.perf_counter() - t0) * 1e3
        if c is None:
            return Sample(ms)
        if c.generation is None:
            return Sample(ms, typeahead=True)
        q1, h1 = self.prefix_cache()
        queried, hit = int(q1 - q0), int(h1 - h0)
        self.cache_queries += queried
        self.cache_hits += hit
        g = c.generation
        return Sample(ms, False, queried - hit, hit, g.generated_tokens, g.prefill_ms, g.decode_ms)


def transformers_twin(model: GPTBigCode) -> Any:
    """transformers' GPTBigCodeForCausalLM sharing our model's fp32 tensors (no extra copy)."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    c = model.config
    cfg = GPTBigCodeConfig(
        vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        n_inner=c.n_inner, layer_norm_epsilon=c.layer_norm_epsilon, activation_function="gelu_pytorch_tanh",
        multi_query=True, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, tie_word_embeddings=True,
    )
    with torch.device("meta"):
        hf = GPTBigCodeForCausalLM(cfg)
    state = {"transformer." + k: v for k, v in model.state_dict().items()}
    state["lm_head.weight"] = model.wte.weight
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    for name in missing:  # non-persistent buffers (masks) transformers may still declare
        mod_name, _, buf = name.rpartition(".")
        mod = hf.get_submodule(mod_name)
        if getattr(mod, buf).is_meta:
            raise RuntimeError(f"transformers twin: {name} has no value")
    if unexpected:
        raise RuntimeError(f"transformers twin: unexpected {unexpected}")
    hf.tie_weights()
    return hf.eval()


def shared_copy(model: GPTBigCode) -> GPTBigCode:
    """A second GPTBigCode over the same tensors, so a dtype path can replace its layers."""
    with torch.device("meta"):
        twin = GPTBigCode(model.config)
    twin.load_state_dict(model.state_dict(), assign=True)
    return twin.eval()


# -- measurements ----------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the package's one percentile rule; NaN without values (tables)."""
    value = percentile(values, q * 100)
    return float("nan") if value is None else value


def bandwidth_gbs(mib: int = 1024, repeat: int = 5) -> float:
    """Memory read bandwidth with the threads as set: the best of `repeat` passes over `mib` MiB
    of fp32, read by a sum and by a matrix-vector product (MKL's GEMV streams best)."""
    a = torch.ones((mib << 20) // 4)
    m, x = a.view(-1, 1024), torch.ones(1024)
    a.sum(), torch.mv(m, x)
    best = min(min(_timed(lambda: a.sum()), _timed(lambda: torch.mv(m, x))) for _ in range(repeat))
    return a.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def weight_bytes_per_token(model: GPTBigCode) -> int:
    """Bytes one decode step reads: every matmul weight (the lm_head included), not the embeddings'
    single rows."""
    total = 0
    for mod in [*model.modules()]:
        if mod is model.wte or mod is model.wpe:
            continue
        for t in [*mod.parameters(recurse=False), *mod.buffers(recurse=False)]:
            total += t.numel() * t.element_size()
        packed = getattr(mod, "_packed", None)
        if packed is not None:  # fbgemm packed int8: one byte per weight plus scales
            total += mod.out_features * mod.in_features + mod.out_features * 8
    if model.lm_head is None:
        total += model.wte.weight.numel() * model.wte.weight.element_size()
    return total


def decode_probe(model: GPTBigCode, steps: int, context: int = 64) -> tuple[float, float]:
    """(decode ms/token median, prefill tokens/s) on random ids, outside the pipeline."""
    cache = model.new_cache(context + steps + 1)
    ids = torch.randint(0, model.config.vocab_size, (context + steps,), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    model(ids[:context], 0, cache, last_only=True)
    prefill = context / (time.perf_counter() - t0)
    times = []
    for i in range(context, context + steps):
        t0 = time.perf_counter()
        model(ids[i : i + 1], i, cache, last_only=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, prefill


def top1_agreement(ref: GPTBigCode, other: GPTBigCode, texts: list[str], tokenizer, max_tokens: int) -> tuple[float, int]:
    """Share of positions where `other`'s argmax equals `ref`'s (teacher forcing over `texts`)."""
    same = total = 0
    n_pos = ref.config.n_positions
    for text in texts:
        ids = tokenizer.encode(text)[: min(max_tokens, n_pos)]
        if len(ids) < 2:
            continue
        t = torch.tensor(ids)  # the two models may sit on different devices (GPU vs CPU reference)
        a = ref(t.to(ref.wte.weight.device), 0, ref.new_cache(len(ids))).argmax(-1).cpu()
        b = other(t.to(other.wte.weight.device), 0, other.new_cache(len(ids))).argmax(-1).cpu()
        same += int((a == b).sum())
        total += len(ids)
    return (same / total if total else float("nan")), total


def heldout_texts(paths: list[Path]) -> list[str]:
    files = sorted(p for p in HELDOUT_DIR.glob("*") if p.suffix != ".md") if HELDOUT_DIR.is_dir() else []
    files += [p for p in paths if p not in files]
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def startup_probe(opts: Options, key: Keystroke, timeout: float = 900) -> dict[str, float]:
    """Import + load + first completion in a fresh process, with its peak RSS."""
    code = (
        "import json, resource, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from santa_lsp.config import Options\n"
        "from santa_lsp.engine import load_engine\n"
        "from santa_lsp.service import CompletionService\n"
        "t1 = time.perf_counter()\n"
        "args = json.loads(sys.stdin.read())\n"
        "opts = Options(**args['opts'])\n"
        "loaded = load_engine(opts, allow_download=False)\n"
        "t2 = time.perf_counter()\n"
        "CompletionService(loaded.engine, opts).complete(args['text'], args['cursor'], doc='x')\n"
        "t3 = time.perf_counter()\n"
        "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, 'first_completion_s': t3 - t2,\n"
        "                  'total_s': t3 - t0, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,\n"
        "                  'threads': __import__('torch').get_num_threads()}))\n"
    )
    payload = json.dumps({"opts": dataclasses.asdict(opts), "text": key.text, "cursor": key.cursor})
    proc = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, text=True,
                          timeout=timeout, env=server_env())
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gb, 1), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# -- the run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace, log=print) -> dict[str, Any]:
    paths = [Path(p) for p in args.files] if args.files else default_files()
    keys = replay(paths, args.keystrokes, args.seed, args.typo_rate)
    if not keys:
        raise SystemExit("benchmarks.keystrokes: no keystrokes to replay")
    opts = options_from_args(args, Options(device="cpu"))
    report: dict[str, Any] = {
        "command": " ".join([PROG, *getattr(args, "argv", [])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
        "loadavg_start": loadavg(), "model": args.model, "keystrokes": len(keys),
        "files": [str(p) for p in paths], "max_new_tokens": args.max_new_tokens,
        "context_budget": args.context_budget, "typo_rate": args.typo_rate,
    }

    if not args.no_startup:
        log(f"start-up probe ({args.model}, dtype {args.dtype}) ...")
        report["startup"] = startup_probe(opts, keys[0])

    log(f"loading {args.model} ...")
    # One float32 copy of the weights; the chosen dtype path and transformers share its tensors.
    master = load_engine(dataclasses.replace(opts, dtype="float32"), allow_download=False)
    tokenizer, fp32 = master.engine.tokenizer, master.engine.model
    threads = torch.get_num_threads()
    ours_model, ours_dtype = fp32, "float32"
    if args.dtype not in ("auto", "float32"):
        ours_model = prepare_model(shared_copy(fp32), torch.device("cpu"), args.dtype)
        ours_dtype = args.dtype
    elif args.dtype == "auto":
        ours_model = prepare_model(shared_copy(fp32), torch.device("cpu"), "auto")
        ours_dtype = _dtype_name(ours_model)
    report.update(dtype=ours_dtype, threads=threads, n_positions=fp32.config.n_positions,
                  params_m=round(fp32.config.n_params() / 1e6, 1))

    wanted = args.variants.split(",")
    variants: list[Variant] = []
    spm = dataclasses.replace(opts, fim_order="spm")
    if "ours" in wanted:
        variants.append(ServiceVariant("ours", f"SPM, reuse on, {ours_dtype}", ours_model, tokenizer, spm, True))
    if "natural" in wanted:  # the product as used: stop rules end the line early
        variants.append(ServiceVariant("natural", f"SPM, reuse on, {ours_dtype}, stop rules on", ours_model,
                                       tokenizer, spm, True, fixed=False))
    if "reuse-off" in wanted:
        variants.append(ServiceVariant("reuse-off", f"SPM, reuse off, {ours_dtype}", ours_model, tokenizer, spm, False))
        variants[-1].every = args.slow_every
    if "psm" in wanted:
        variants.append(ServiceVariant("psm", f"PSM, reuse on, {ours_dtype}", ours_model, tokenizer,
                                       dataclasses.replace(opts, fim_order="psm"), True))
    if "fp32" in wanted and ours_model is not fp32:
        variants.append(ServiceVariant("fp32", "SPM, reuse on, float32", fp32, tokenizer, spm, True))
    if "baseline" in wanted:
        variants.append(BaselineVariant(transformers_twin(fp32), tokenizer, opts, fp32.config.n_positions))
        variants[-1].every = args.slow_every
    endpoint = getattr(args, "endpoint", "")
    if endpoint:
        from santa_lsp.engine.remote import connect

        served = getattr(args, "served_model", "") or args.model
        remote = connect(endpoint, served, allow_download=False)
        report["endpoint"] = remote.endpoint
        remote_opts = dataclasses.replace(opts, model=served, endpoint=endpoint)
        if "remote" in wanted or not any(w.startswith("remote") for w in wanted):
            variants.append(RemoteVariant("remote", f"SPM via {remote.endpoint}", remote,
                                          dataclasses.replace(remote_opts, fim_order="spm")))
        if "remote-psm" in wanted or not any(w.startswith("remote") for w in wanted):
            variants.append(RemoteVariant("remote-psm", f"PSM via {remote.endpoint}", remote,
                                          dataclasses.replace(remote_opts, fim_order="psm")))

    log(f"replaying {len(keys)} keystrokes over {len(paths)} file(s), variants: {', '.join(v.name for v in variants)}")
    t_start = time.perf_counter()
    for i, key in enumerate(keys):
        for v in variants:
            if i % v.every == 0:
                v.samples.append(v.run(key))
        if args.progress and (i + 1) % max(1, len(keys) // 10) == 0:
            log(f"  {i + 1}/{len(keys)} keystrokes, {time.perf_counter() - t_start:.0f}s")
    report["replay_s"] = round(time.perf_counter() - t_start, 1)
    report["variants"] = [_summary(v) for v in variants]
    for row, v in zip(report["variants"], variants):
        if isinstance(v, RemoteVariant):
            row["prefix_cache_hit_rate"] = v.cache_hits / v.cache_queries if v.cache_queries else float("nan")
    _ratios(report["variants"], keys, variants)

    log("engine probe (decode vs floor, per dtype) ...")
    bw = bandwidth_gbs(args.bandwidth_mib)
    report["bandwidth_gbs"] = round(bw, 2)
    engines = [("float32", fp32)] + ([(ours_dtype, ours_model)] if ours_model is not fp32 else [])
    for extra in args.probe_dtypes.split(",") if args.probe_dtypes else []:
        if extra not in {name for name, _ in engines}:
            engines.append((extra, prepare_model(shared_copy(fp32), torch.device("cpu"), extra)))
    texts = heldout_texts(paths)
    rows = []
    for name, model in engines:
        ms, prefill = decode_probe(model, args.probe_steps)
        nbytes = weight_bytes_per_token(model)
        row = {"dtype": name, "weight_mb_per_token": round(nbytes / 1e6, 1),
               "floor_ms": round(nbytes / (bw * 1e9) * 1e3, 1), "decode_ms": round(ms, 1),
               "prefill_tok_s": round(prefill, 1)}
        if model is not fp32 and not args.no_agreement:
            agree, n = top1_agreement(fp32, model, texts, tokenizer, args.agreement_tokens)
            row.update(top1_agreement=round(agree, 4), agreement_tokens=n)
        rows.append(row)
    report["engine"] = rows
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["loadavg_end"] = loadavg()
    if args.lsp:
        log("LSP over stdio ...")
        report["lsp"] = lsp_probe(args, keys[: args.lsp_keystrokes])
    return report


def _dtype_name(model: GPTBigCode) -> str:
    # The block's matmuls name the kernel: int4 keeps its lm_head in int8.
    kernel = type(model.h[0].mlp.c_fc).__name__
    if kernel != "Linear":
        return {"Int8Linear": "int8", "Int4Linear": "int4"}.get(kernel, "bfloat16")
    return str(model.wte.weight.dtype).removeprefix("torch.")


def _summary(v: Variant) -> dict[str, Any]:
    s = v.samples
    lat = [x.latency_ms for x in s]
    runs = [x for x in s if not x.typeahead and x.generated]
    gen = sum(x.generated for x in runs)
    dec_tokens = sum(max(0, x.generated - 1) for x in runs)  # the first token comes from the prefill logits
    pre_ms = sum(x.prefill_ms for x in runs)
    return {
        "name": v.name, "what": v.what, "keystrokes": len(s), "every": v.every,
        "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "p99_ms": pct(lat, 0.99), "mean_ms": statistics.fmean(lat) if lat else float("nan"),
        "computed_per_key": statistics.fmean(x.computed for x in s) if s else 0.0,
        "reused_per_key": statistics.fmean(x.reused for x in s) if s else 0.0,
        "typeahead_hits": sum(x.typeahead for x in s),
        "prefill_tok_s": sum(x.computed for x in runs) / (pre_ms / 1e3) if pre_ms > 0 else float("nan"),
        "decode_ms_per_token": sum(x.decode_ms for x in runs) / dec_tokens if dec_tokens and v.name != "baseline" else float("nan"),
        "generated_per_run": gen / len(runs) if runs else 0.0,
    }


def _ratios(rows: list[dict[str, Any]], keys: list[Keystroke], variants: list[Variant]) -> None:
    """Latency relative to `ours`, on the keystrokes both ran (slow variants skip some)."""
    ours = next((v for v in variants if v.name == "ours"), None)
    if ours is None:
        return
    for row, v in zip(rows, variants):
        mine = [x.latency_ms for x in v.samples]
        theirs = [ours.samples[i * v.every].latency_ms for i in range(len(mine))]
        row["ratio_p50"] = pct(mine, 0.5) / pct(theirs, 0.5) if theirs else float("nan")
        row["ratio_mean"] = statistics.fmean(mine) / statistics.fmean(theirs) if theirs else float("nan")


# -- LSP over stdio --------------------------------------------------------------------------
def _position(text: str, offset: int) -> dict[str, int]:
    """LSP position (UTF-16 columns) of a character offset."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    col = len(text[start:offset].encode("utf-16-le")) // 2
    return {"line": line, "character": col}


def lsp_probe(args: argparse.Namespace, keys: list[Keystroke]) -> dict[str, Any]:
    """Per-keystroke latency through `santa-lsp serve --stdio` next to the same requests in-process
    (natural stop rules on both sides, typing-ahead cache on)."""
    init_opts = options_from_args(args, Options(device="cpu", debounce_ms=0)).to_dict()
    client = RawClient()
    lat: list[float] = []
    try:
        client.initialize(init_opts, process_id=os.getpid())
        docs: dict[str, int] = {}
        deadline = time.monotonic() + 600
        for i, key in enumerate(keys):
            uri = Path(key.doc).resolve().as_uri()
            if uri not in docs:
                docs[uri] = 1
                client.open(uri, key.text)
            else:
                docs[uri] += 1
                client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": docs[uri]},
                                                         "contentChanges": [{"text": key.text}]})
            params = {"textDocument": {"uri": uri}, "position": _position(key.text, key.cursor),
                      "context": {"triggerKind": 2}}
            while True:  # the model loads in the background: wait for the first real answer
                t0 = time.perf_counter()
                reply = client.request("textDocument/inlineCompletion", params, timeout=600)
                ms = (time.perf_counter() - t0) * 1e3
                if reply is None or "error" in reply:
                    raise RuntimeError(f"inlineCompletion: {reply.get('error') if reply else 'no answer'}")
                result = reply.get("result")
                items = result.get("items", []) if isinstance(result, dict) else (result or [])
                if i > 0 or items or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if i > 0:  # the first request also waited for the model
                lat.append(ms)
        client.shutdown()
    finally:
        client.close()
    # The same requests in-process, for the overhead.
    opts = options_from_args(args, Options(device="cpu"))
    service = CompletionService(load_engine(opts, allow_download=False).engine, opts)
    local = []
    for i, key in enumerate(keys):
        t0 = time.perf_counter()
        service.complete(key.text, key.cursor, doc=key.doc)
        if i > 0:
            local.append((time.perf_counter() - t0) * 1e3)
    return {"keystrokes": len(lat), "lsp_p50_ms": pct(lat, 0.5), "lsp_p95_ms": pct(lat, 0.95),
            "inproc_p50_ms": pct(local, 0.5), "inproc_p95_ms": pct(local, 0.95),
            "overhead_p50_ms": pct(lat, 0.5) - pct(local, 0.5)}


# -- report ----------------------------------------------------------------------------------
def _f(x: float, nd: int = 1) -> str:
    return "—" if x != x else f"{x:,.{nd}f}"


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    out = [
        f"- command: `{r['command']}`",
        f"- date: {r['date']}; machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; torch {m['torch']}, "
        f"Python {m['python']}",
        f"- load average (1/5/15 min) at start: {r['loadavg_start']}; at end: {r['loadavg_end']}",
        f"- model: `{r['model']}` ({r['params_m']}M parameters), dtype `{r['dtype']}`, {r['threads']} thread(s); "
        f"{r['keystrokes']} keystrokes over {len(r['files'])} file(s) ({', '.join(Path(f).name for f in r['files'])}), "
        f"typo rate {r['typo_rate']}; exactly {r['max_new_tokens']} new tokens per model run; "
        f"context budget {r['context_budget'] or 'full'}",
        "",
        "| variant | what | keys run | p50 ms | p95 ms | p99 ms | x ours (p50) | x ours (mean) | computed tok/key "
        "| reused tok/key | typeahead hits | prefill tok/s | decode ms/tok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in r["variants"]:
        out.append(
            f"| {v['name']} | {v['what']} | {v['keystrokes']} | {_f(v['p50_ms'])} | {_f(v['p95_ms'])} | {_f(v['p99_ms'])} "
            f"| {_f(v.get('ratio_p50', float('nan')), 2)} | {_f(v.get('ratio_mean', float('nan')), 2)} "
            f"| {_f(v['computed_per_key'])} | {_f(v['reused_per_key'])} | {v['typeahead_hits']} "
            f"| {_f(v['prefill_tok_s'])} | {_f(v['decode_ms_per_token'])} |")
    remote = [v for v in r["variants"] if "prefix_cache_hit_rate" in v]
    if remote:
        out += ["", "Remote variants: computed / reused tokens are the server's prefix-cache misses / hits at each "
                "keystroke; prefix-cache hit rate over the run: "
                + ", ".join(f"{v['name']} {v['prefix_cache_hit_rate'] * 100:.1f}%" for v in remote) + "."]
    out += ["", "x ours: this variant's latency over `ours`' on the same keystrokes (slow variants may run on every "
            "n-th keystroke only; `keys run` says how many). Latency is the wall time of one request, typing-ahead "
            "hits included; decode ms/tok excludes the first token, which comes from the prefill."]
    out += ["", f"Engine probe (random ids, 64-token prefill then single-token steps); memory bandwidth "
            f"measured in this run: {r['bandwidth_gbs']} GB/s (best of a sum and a GEMV over 1 GiB of fp32, same threads).", "",
            "| dtype | weights read per token (MB) | floor ms/token | decode ms/token | x floor | prefill tok/s "
            "| top-1 agreement with fp32 |", "|---|---|---|---|---|---|---|"]
    for e in r["engine"]:
        if "top1_agreement" in e:
            agree = f"{e['top1_agreement'] * 100:.2f}% of {e['agreement_tokens']} tokens"
        else:
            agree = "(reference)" if e["dtype"] == "float32" else "not measured"
        out.append(f"| {e['dtype']} | {_f(e['weight_mb_per_token'])} | {_f(e['floor_ms'])} | {_f(e['decode_ms'])} "
                   f"| {_f(e['decode_ms'] / e['floor_ms'] if e['floor_ms'] else float('nan'), 2)} "
                   f"| {_f(e['prefill_tok_s'])} | {agree} |")
    s = r.get("startup")
    if s:
        if "error" in s:
            out += ["", f"Start-up probe failed: {s['error']}"]
        else:
            out += ["", f"Start-up in a fresh process (dtype `{r['dtype']}`): import {s['import_s']:.2f} s, load "
                    f"{s['load_s']:.2f} s, first completion {s['first_completion_s']:.2f} s, total {s['total_s']:.2f} s; "
                    f"peak RSS {s['peak_rss_mb']:.0f} MB; {s['threads']} thread(s)."]
    out += ["", f"Peak RSS of the benchmark process (all variants and transformers together): {r['peak_rss_mb']:.0f} MB; "
            f"replay took {r['replay_s']} s."]
    lsp = r.get("lsp")
    if lsp:
        out += ["", f"Through `santa-lsp serve --stdio` ({lsp['keystrokes']} keystrokes, natural stop rules): p50 "
                f"{_f(lsp['lsp_p50_ms'])} ms, p95 {_f(lsp['lsp_p95_ms'])} ms; the same requests in-process: p50 "
                f"{_f(lsp['inproc_p50_ms'])} ms, p95 {_f(lsp['inproc_p95_ms'])} ms; protocol overhead at p50 "
                f"{_f(lsp['overhead_p50_ms'])} ms."]
    return "\n".join(out) + "\n"


# -- command line ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help=f"source files to re-type (default: stdlib {', '.join(DEFAULT_MODULES)})")
    # --dtype is that of `ours`; every variant generates exactly --max-new-tokens tokens.
    add_option_arguments(p, ("model", "dtype", "threads", "max_new_tokens", "mode", "context_budget"),
                         defaults={"model": "bundled", "max_new_tokens": 16, "mode": "single-line"})
    p.add_argument("--keystrokes", type=int, default=300, help="keystrokes in all (default: %(default)s)")
    p.add_argument("--variants", default="ours,natural,reuse-off,psm,fp32,baseline",
                   help="comma-separated, from ours, natural (stop rules on), reuse-off, psm, fp32, baseline "
                        "(default: %(default)s)")
    p.add_argument("--slow-every", type=int, default=1, help="run reuse-off and baseline on every n-th keystroke only")
    p.add_argument("--typo-rate", type=float, default=0.03, help="share of characters preceded by a typo + backspace")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-steps", type=int, default=16, help="decode steps in the engine probe")
    p.add_argument("--probe-dtypes", default="", help="more dtypes for the engine probe, e.g. bfloat16,int8")
    p.add_argument("--agreement-tokens", type=int, default=1024, help="tokens per held-out file for top-1 agreement")
    p.add_argument("--no-agreement", action="store_true")
    p.add_argument("--bandwidth-mib", type=int, default=1024)
    p.add_argument("--no-startup", action="store_true", help="skip the fresh-process start-up probe")
    p.add_argument("--endpoint", default="", metavar="URL",
                   help="also replay through this OpenAI-compatible server (vLLM serving the same model): "
                        "variants remote (SPM) and remote-psm, with its prefix-cache hits from /metrics")
    p.add_argument("--served-model", default="", help="the model's name on --endpoint (default: --model)")
    p.add_argument("--lsp", action="store_true", help="also measure through `santa-lsp serve --stdio`")
    p.add_argument("--lsp-keystrokes", type=int, default=60)
    p.add_argument("--out", type=Path, help="write the markdown table here")
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--progress", action="store_true", help="progress on stderr")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    report = run(args, log)
    text = markdown(report)
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
