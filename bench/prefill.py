"""Prefill speed and peak memory of this checkout against an earlier commit, on the same checkpoint, alternated.

    python bench/prefill.py --checkpoint /tmp/350m-int8 [--baseline 8293539] [--prompt-tokens 64 1000]
        [--batch 1] [--repeats 3]

Without --checkpoint a random-weight ``codegeex_350m`` folder in ``quantize``'s default form (int8 Linears, float32
rest; ``codegeex_ms.checkpoint.write_random``) is written to a temporary folder first. The baseline commit is
checked out with ``git worktree`` into a temporary folder and imported from there (same Python environment).
Each measurement is a child process (``--child``): load, build a Generator whose cache holds the prompt and one
new token, warm up the prefill graphs that prompt uses, then time one prefill (``generate_rows`` with one new
token: the prefill and the first sampled token) and report its own peak RSS (``VmHWM``, read in the child: ``wait4``'s
``ru_maxrss`` would start from the parent's size). The sides
alternate within each round, the order reversed every other round; the table shows every round. Check
``uptime`` first: a figure taken while another job loads the CPU is not a result.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(args) -> None:
    import mindspore as ms
    from codegeex_ms.generation import SamplingConfig, cache_length
    from codegeex_ms.loading import load_for_inference
    ms.set_context(mode=ms.GRAPH_MODE)
    loaded = load_for_inference(args.checkpoint, None)
    prompt = list(range(1000, 1000 + args.prompt_tokens))
    max_len = cache_length(args.prompt_tokens + 1, loaded.context)
    generator = loaded.generator(batch_size=args.batch, max_len=max_len)
    start = time.perf_counter()
    generator.warmup(args.prompt_tokens)
    warmup = time.perf_counter() - start
    result = generator.generate_rows([(prompt, SamplingConfig(max_new_tokens=1, greedy=True), args.batch)])[0]
    peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"prefill_s": result.timings["prefill_s"], "warmup_s": warmup, "peak_gib": peak_kib / 2**20,
                      "first_token": int(result.token_ids[0][0]) if result.token_ids[0] else -1}))


def measure(src: Path, checkpoint: Path, prompt_tokens: int, batch: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--checkpoint", str(checkpoint),
               "--prompt-tokens", str(prompt_tokens), "--batch", str(batch)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        if proc.wait() != 0:
            err.seek(0)
            raise SystemExit(f"{src}: the measurement failed:\n{err.read()[-3000:]}")
        out.seek(0)
        text = out.read()
    result = json.loads(text[text.rindex("{"):])
    result["tokens_per_s"] = prompt_tokens * batch / result["prefill_s"]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: a random 350M int8 one, written "
                                                   "to a temporary folder)")
    p.add_argument("--baseline", default="8293539", help="the commit to compare with (default 8293539: before "
                                                         "chunked prefill)")
    p.add_argument("--prompt-tokens", type=int, nargs="+", default=[64, 1000], help="prompt lengths (default 64 1000)")
    p.add_argument("--batch", type=int, nargs="+", default=[1],
                   help="rows, each the same prompt (default 1; the baseline's 1,000-token prefill at batch 4 needs "
                        "about 30 GB)")
    p.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared/tokenizer/codegeex",
                   help="tokenizer recorded in the random checkpoint (default ../shared/tokenizer/codegeex)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.prompt_tokens, args.batch = args.prompt_tokens[0], args.batch[0]
        child(args)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench_prefill_"))
    try:
        if args.checkpoint is None:
            sys.path.insert(0, str(ROOT / "src"))
            from codegeex_ms.checkpoint import write_random
            from codegeex_ms.config import resolve_config
            cfg = resolve_config("codegeex_350m").replace(
                precision={"param_dtype": "float32", "compute_dtype": "float32", "weight_quant": "int8"})
            args.checkpoint = write_random(work / "350m-int8", cfg, tokenizer=str(args.tokenizer.resolve()))
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(work / "baseline"),
                        args.baseline], check=True, capture_output=True)
        sides = {f"baseline {args.baseline}": work / "baseline" / "src", "this checkout": ROOT / "src"}
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
        rows = []
        for prompt_tokens in args.prompt_tokens:
            for batch in args.batch:
                for r in range(args.repeats):
                    order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
                    for name, src in order:
                        result = measure(src, args.checkpoint, prompt_tokens, batch)
                        rows.append((prompt_tokens, batch, r + 1, name, result))
                        print(f"  {prompt_tokens} tokens x {batch}, round {r + 1}, {name}: "
                              f"{result['tokens_per_s']:.0f} tokens/s, {result['peak_gib']:.2f} GiB", flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
        print("\n| prompt tokens | batch | round | side | prefill tokens/s | warm-up s | peak RSS GiB | first token |")
        print("|---|---|---|---|---|---|---|---|")
        for prompt_tokens, batch, r, name, res in rows:
            print(f"| {prompt_tokens} | {batch} | {r} | {name} | {res['tokens_per_s']:.0f} | {res['warmup_s']:.1f} | "
                  f"{res['peak_gib']:.2f} | {res['first_token']} |")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
