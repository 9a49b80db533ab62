"""Regenerate benchmarks/RESULTS.md: every table in it comes from this one command.

    python benchmarks/regenerate.py            # about 45-60 minutes on a busy 2-core machine
    python benchmarks/regenerate.py --quick    # a few minutes: fewer keystrokes, bundled model only

Steps: (1) the 1.1B SantaCoder shape with random weights (`synthetic:santacoder`, seed 0) is
saved once as a gpt_bigcode checkpoint, so that start-up measures a real checkpoint load;
(2) `python -m benchmarks.keystrokes` on the bundled model (with the LSP stdio mode and top-1 agreement);
(3) the same on the 1.1B checkpoint; (4) thread count x OpenMP wait policy;
(5) RESULTS.md = those tables + benchmarks/NOTES.md (the analysis, written by hand).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
SYNTH = Path("/tmp/santacoder-synth")


def sh(*args: str, out: Path | None = None) -> None:
    print("+", " ".join(args), file=sys.stderr, flush=True)
    result = subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    if out is not None:
        out.write_text(result.stdout, encoding="utf-8")


def make_synthetic(path: Path) -> None:
    if (path / "model.safetensors").is_file():
        return
    sh(sys.executable, "-c", (
        "import shutil, sys; from pathlib import Path\n"
        "from santa_lsp.engine.model import PRESETS, GPTBigCode, init_random\n"
        "from santa_lsp.engine.weights import save_gpt_bigcode\n"
        "from santa_lsp.engine.hub import BUNDLED_DIR\n"
        "p = Path(sys.argv[1]); save_gpt_bigcode(init_random(GPTBigCode(PRESETS['santacoder'])), p)\n"
        "shutil.copy(BUNDLED_DIR / 'tokenizer.json', p / 'tokenizer.json')\n"), str(path))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--synthetic-dir", type=Path, default=SYNTH)
    p.add_argument("--assemble-only", action="store_true", help="rebuild RESULTS.md from benchmarks/out/*.md")
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    bench = [sys.executable, "-m", "benchmarks.keystrokes", "--progress"]
    sections = [("Bundled model (5M parameters)", OUT / "bundled.md")]
    if not a.quick:
        sections += [("SantaCoder 1.1B shape (`synthetic:santacoder` weights saved as a checkpoint)",
                      OUT / "santacoder.md"),
                     ("Threads x OpenMP wait policy (1.1B shape, int8, decode step)", OUT / "threads.md")]
    if not a.assemble_only:
        sh(*bench, "--model", "bundled", "--dtype", "int8", "--keystrokes", "60" if a.quick else "200",
           "--probe-dtypes", "int4,bfloat16", "--lsp", "--json", str(OUT / "bundled.json"), out=OUT / "bundled.md")
        if not a.quick:
            make_synthetic(a.synthetic_dir)
            sh(*bench, "--model", str(a.synthetic_dir), "--dtype", "int8", "--keystrokes", "24",
               "--context-budget", "1024", "--slow-every", "4", "--variants", "ours,natural,reuse-off,psm,baseline",
               "--probe-dtypes", "int4,bfloat16", "--no-agreement",
               "--json", str(OUT / "santacoder.json"), out=OUT / "santacoder.md")
            sh(sys.executable, "benchmarks/threads.py", "--model", str(a.synthetic_dir), "--dtype", "int8",
               "--repeats", "1", "--json", str(OUT / "threads.json"), out=OUT / "threads.md")
    text = ["# Benchmark results", "",
            "Regenerate everything below with `python benchmarks/regenerate.py` (the tables are written by it; "
            "the analysis comes from `benchmarks/NOTES.md`).", ""]
    for title, path in sections:
        text += [f"## {title}", "", path.read_text(encoding="utf-8").rstrip(), ""]
    notes = ROOT / "benchmarks" / "NOTES.md"
    if notes.is_file():
        text += [notes.read_text(encoding="utf-8").rstrip(), ""]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(text), encoding="utf-8")
    print("wrote benchmarks/RESULTS.md", file=sys.stderr)
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
