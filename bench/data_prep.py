"""Throughput of data preparation: MB/s of raw source to MindRecord, and the share of time in each stage.

    python bench/data_prep.py [--source DIR] [--megabytes 40] [--tokenizer ../shared/tokenizer/codegeex]

Default input: this Python's standard library (real source). Runs the full pipeline (collect, filters,
exact + near dedup, tokenize on all cores, pack, write) into a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

from codegeex_ms.data.pipeline import PrepareOptions, prepare
from codegeex_ms.tokenizer import load


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                   help="source tree to prepare (default: the Python standard library)")
    p.add_argument("--tokenizer", type=Path, default=Path(__file__).resolve().parents[2] / "shared/tokenizer/codegeex",
                   help="tokenizer directory (default ../shared/tokenizer/codegeex)")
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench_data_prep_"))
    try:
        start = time.perf_counter()
        manifest = prepare([args.source], out, load(args.tokenizer), PrepareOptions(seq_len=2048))
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    seen_mb = sum(c.get("bytes", 0) for c in manifest["languages"].values()) / 1e6
    tokens = sum(c.get("tokens", 0) for c in manifest["languages"].values())
    stages = manifest["stage_seconds"]
    print(f"{args.source}: {seen_mb:.1f} MB kept, {tokens:,} tokens, {os.cpu_count()} cores, {wall:.1f}s wall "
          f"-> {seen_mb / wall:.2f} MB/s of kept source")
    print("| stage | seconds | share |")
    print("|---|---|---|")
    for stage, seconds in stages.items():
        print(f"| {stage} | {seconds:.1f} | {seconds / wall:.0%} |")


if __name__ == "__main__":
    main()
