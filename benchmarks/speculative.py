"""Speculative decoding from the document, measured on the 1.1B SantaCoder shape with a
perfect-model replay: random weights do the arithmetic (int8 CPU path by default), and the true
continuation of real files decides every token (`GenerationParams.teacher`), so drafts are
accepted exactly as often as a model that writes the file would have them accepted.

For each replay case (holes at the end of a line and block bodies in the replay files), the
prompt is prefilled once, then the same 16 tokens are generated with drafting off and on,
interleaved, each from the same warm cache (only the decode is timed).

    python -m benchmarks.speculative [--model synthetic:santacoder] [--dtype int8] [--cases 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks.replay import continuation, default_files, make_cases
from santa_lsp.config import Options, add_option_arguments, options_from_args
from santa_lsp.engine import GenerationParams, load_engine
from santa_lsp.prompt import PromptBuilder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_option_arguments(ap, ("model", "dtype", "threads"), defaults={"model": "synthetic:santacoder", "dtype": "int8"})
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--budget", type=int, default=1000, help="prompt tokens")
    args = ap.parse_args()
    t0 = time.perf_counter()
    loaded = load_engine(options_from_args(args, Options(device="cpu")))
    engine, tok = loaded.engine, loaded.engine.tokenizer
    print(f"model={loaded.model} dtype={loaded.dtype} load={time.perf_counter() - t0:.1f}s "
          f"load_average={os.getloadavg()[0]:.1f}")
    builder = PromptBuilder(tok)
    cases = []
    for path in default_files():
        text = path.read_text()
        for case in make_cases(text, str(path), 2, seed=3, tokenizer=tok):
            if case.kind in ("end-of-line", "block-body"):
                cases.append(case)
    cases = cases[:: max(1, len(cases) // args.cases)][: args.cases]
    rows = {0: [], 6: []}
    drafted = accepted = 0
    for n, case in enumerate(cases):
        prompt = builder.build(case.document, case.start, args.budget, "spm", 0.25, f"c{n}", heal=False).ids
        written, _ = continuation(case, "run-on", None)
        teacher = tok.encode(written)[: args.tokens]
        key = f"case{n}"
        engine.generate(prompt, GenerationParams(max_new_tokens=1, teacher=teacher), key=key)  # prefill
        for draft in (0, 6):
            params = GenerationParams(max_new_tokens=args.tokens, teacher=teacher, draft_tokens=draft)
            r = engine.generate(prompt, params, key=key)
            assert r.ids == teacher[: len(r.ids)]
            rows[draft].append((r.decode_ms, len(r.ids)))
            if draft:
                drafted, accepted = drafted + r.drafted, accepted + r.accepted
    for draft, runs in rows.items():
        per_request = [ms for ms, _ in runs]
        per_token = sum(ms for ms, _ in runs) / max(1, sum(k for _, k in runs))
        print(f"draft_tokens={draft}: decode p50 {statistics.median(per_request):.0f} ms per request "
              f"({args.tokens} tokens), {per_token:.1f} ms/token")
    base, fast = (statistics.median(ms for ms, _ in rows[k]) for k in (0, 6))
    print(f"speed-up p50 {base / fast:.2f}x; drafted {drafted}, accepted {accepted} "
          f"({accepted / max(1, sum(k for _, k in rows[6])):.0%} of generated tokens came from drafts); "
          f"load_average={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
