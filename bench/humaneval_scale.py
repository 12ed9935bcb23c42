"""HumanEval-X at paper scale: generation samples/s at n=200, execution programs/s per language, and the projected
cost of a full paper run on 1, 8 and 64 hosts.

    python bench/humaneval_scale.py [--checkpoint checkpoints/codegeex-mini] [--problems 2] [--n 200]
        [--batch-size 16] [--eval-limit 41] [--workers 2] [--decode MODEL=TOKENS_PER_S ...]

1. Generation: ``eval_humaneval_x.py generate`` at n=200, temperature 0.8, top-p 0.95 (the pass@10/100 setting)
   on the first ``--problems`` Python problems, timed as a whole (load and compile included): samples/s and
   generated tokens/s (the kept completions re-encoded: a lower bound, since a stop rule cuts the last tokens).
   The embedded model stops like a trained model does; its speed is that of an 8M-parameter model.
2. Execution: ``evaluate --canonical --limit N`` per language with ``--workers`` programs at once: programs/s and
   core-seconds per program (wall x workers / programs).
3. Projection of the paper run (5 languages: 164,000 generation and 656,000 translation samples, every one
   executed), assuming shards scale linearly over hosts (they are independent) and every host is this one (2
   cores): execution hours from (2); generation hours per 100 generated tokens per sample for each ``--decode``
   model given as MODEL=TOKENS_PER_S (decode throughput of one host, e.g. from ``bench/decode.py`` and
   ``bench/decode_13b.py``; not measured here).
Check ``uptime`` first: a figure taken while another job loads the CPU is not a result.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAPER_LANGUAGES = ("python", "cpp", "java", "js", "go")
GENERATION_SAMPLES, TRANSLATION_SAMPLES = 5 * 164 * 200, 20 * 164 * 200


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "eval_humaneval_x.py"), *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "codegeex-mini")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets" / "humaneval-x")
    p.add_argument("--problems", type=int, default=2)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--eval-limit", type=int, default=41, help="canonical programs per language")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--languages", default=",".join(PAPER_LANGUAGES + ("rust",)))
    p.add_argument("--decode", nargs="*", default=[], metavar="MODEL=TOKENS_PER_S")
    args = p.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from codegeex_ms.humaneval.execution import read_jsonl
    from codegeex_ms.tokenizer import load
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = tmp / "samples.jsonl"
        seconds = run(["generate", "--checkpoint", str(args.checkpoint), "--data-dir", str(args.data_dir),
                       "--languages", "python", "--limit", str(args.problems), "--n", str(args.n), "--batch-size",
                       str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens), "--temperature", "0.8",
                       "--top-p", "0.95", "--out", str(samples)])
        rows = read_jsonl(samples)
        tokenizer = load(args.checkpoint / "tokenizer") if (args.checkpoint / "tokenizer").is_dir() else None
        tokens = sum(len(tokenizer.encode(row["generation"])) for row in rows) if tokenizer else None
        print("\n| model | problems x n | batch | wall s | samples/s | kept tokens/s | mean kept tokens/sample |")
        print("|---|---|---|---|---|---|---|")
        name = args.checkpoint.name
        print(f"| {name} | {args.problems} x {args.n} | {args.batch_size} | {seconds:.1f} | "
              f"{len(rows) / seconds:.2f} | {'-' if tokens is None else f'{tokens / seconds:.0f}'} | "
              f"{'-' if tokens is None else f'{tokens / len(rows):.0f}'} |")
        print(f"\n| language | programs | wall s ({args.workers} workers) | programs/s | core-s/program |")
        print("|---|---|---|---|---|")
        core_seconds = {}
        for lang in args.languages.split(","):
            out = tmp / f"canonical-{lang}.jsonl"
            run(["evaluate", "--canonical", "--data-dir", str(args.data_dir), "--languages", lang, "--limit", "2",
                 "--workers", str(args.workers), "--out", str(tmp / f"warm-{lang}.jsonl")])   # shared artefacts
            wall = run(["evaluate", "--canonical", "--data-dir", str(args.data_dir), "--languages", lang, "--limit",
                        str(args.eval_limit), "--workers", str(args.workers), "--out", str(out)])
            programs = len(read_jsonl(out))
            core_seconds[lang] = wall * args.workers / programs
            print(f"| {lang} | {programs} | {wall:.1f} | {programs / wall:.2f} | {core_seconds[lang]:.2f} |")
    mean = sum(core_seconds[lang] for lang in PAPER_LANGUAGES if lang in core_seconds) / \
        max(1, sum(lang in core_seconds for lang in PAPER_LANGUAGES))
    executions = GENERATION_SAMPLES + TRANSLATION_SAMPLES
    cores = os.cpu_count() or 1
    print(f"\nprojection, paper run ({GENERATION_SAMPLES:,} generation + {TRANSLATION_SAMPLES:,} translation "
          f"samples, 5 languages), hosts like this one ({cores} cores), linear scaling:")
    print("\n| work | 1 host h | 8 hosts h | 64 hosts h |")
    print("|---|---|---|---|")
    hours = executions * mean / cores / 3600
    print(f"| execution (canonical-like programs, {mean:.2f} core-s each) | {hours:.1f} | {hours / 8:.1f} | "
          f"{hours / 64:.2f} |")
    for spec in args.decode:
        model, rate = spec.split("=")
        hours = executions * 100 / float(rate) / 3600
        print(f"| generation, {model} at {float(rate):g} tokens/s per host, per 100 tokens/sample | {hours:,.0f} | "
              f"{hours / 8:,.0f} | {hours / 64:,.1f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
