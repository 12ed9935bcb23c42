"""Compile the released 13B cluster layouts rank by rank here (MindSpore DryRun) and tabulate the reports.

    python bench/dryrun_13b.py [--out bench/results/dryrun_13b] [--only NAME ...]

Layouts: the 13B run's (dp 192 x mp 8 = 1,536 ranks, optimizer shard 16, gradient aggregation 4, fp16 compute
with loss scale, recompute), compiled for rank 0 and for a rank in the middle of the data-parallel axis; and a
pipeline variant (dp 96 x mp 8 x pp 2, 4 micro-batches of 4) for a rank of each stage; and the int8 inference
engine on one device (``--generate``: prefill and decode graphs, Ascend's WeightQuantBatchMatmul in every Linear
and the head). Each compile runs
``python -m codegeex_ms.dryrun`` with ``--json``; this script prints one Markdown table (compile seconds, peak
RSS of the compile on this machine, this rank's parameter and optimizer bytes, the memory estimate against
32 GiB and its biggest item) and writes it next to the JSON reports. Compiled in MindSpore's DryRun; not run on
Ascend hardware. Not a CI test (each 13B compile takes minutes and several GB of RAM).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

PIPELINE = ["parallel.data_parallel=96", "parallel.pipeline_stages=2", "parallel.micro_batches=4"]
INT8 = ["precision.weight_quant=int8", "precision.embedding_quant=int8", "precision.param_dtype=float16"]
# name, world (None: the inference engine on one device, --generate), rank, overrides
LAYOUTS = [
    ("13b dp192 x mp8, rank 0", 1536, 0, []),
    ("13b dp192 x mp8, rank 773 (dp index 96, mp index 5)", 1536, 773, []),
    ("13b dp96 x mp8 x pp2, rank 0 (stage 0)", 1536, 0, PIPELINE),
    ("13b dp96 x mp8 x pp2, rank 773 (stage 1)", 1536, 773, PIPELINE),
    ("13b int8 inference (one device, fp16 compute, batch 1, KV cache 128; state = KV cache)", None, 0, INT8),
]


def gib(n: float) -> str:
    return f"{n / (1 << 30):.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/results/dryrun_13b"), help="folder for the reports")
    p.add_argument("--only", action="append", default=[], help="run only layouts whose name contains this")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, world, rank, overrides in LAYOUTS:
        if args.only and not any(o in name for o in args.only):
            continue
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        report = args.out / f"{slug}.json"
        command = ["/usr/bin/time", "-v", sys.executable, "-m", "codegeex_ms.dryrun", "--config", "codegeex_13b",
                   "--out", str(args.out / slug), "--json", str(report)]
        command += ["--generate"] if world is None else ["--world", str(world), "--rank", str(rank)]
        command += [x for o in overrides for x in ("--set", o)]
        print(f"compiling {name} ...", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-30:])
            print(f"{name}: FAILED after {wall:.0f} s\n{tail}")
            rows.append(f"| {name} | failed (see {slug}.log) | | | | | |")
            (args.out / f"{slug}.log").write_text(proc.stdout + proc.stderr)
            continue
        print(proc.stdout)
        rep = json.loads(report.read_text())
        mem = rep["memory_estimate"]
        top = mem["items"][0]
        rows.append(f"| {name} | {rep['compile_s']:.0f} | {int(peak.group(1)) / (1 << 20):.1f} | "
                    f"{gib(rep['rank_bytes']['weight'])} | {gib(rep['rank_bytes']['state'])} | "
                    f"{gib(mem['total_bytes'])} ({'fits' if mem['fits'] else 'does not fit'}) | "
                    f"{top['name']}: {gib(top['bytes'])} |")
    table = ["| layout, rank | compile s | compile peak RSS here, GiB | weights on the rank, GiB | optimizer + other "
             "state, GiB | memory estimate of 32 GiB | biggest item, GiB |", "|---|---|---|---|---|---|---|", *rows]
    text = "\n".join(table)
    print(text)
    (args.out / "table.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
