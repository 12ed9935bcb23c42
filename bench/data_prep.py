"""Corpus preparation at two sizes: the datatrove pipeline of this checkout against the one-process pipeline it
replaced, on the same inputs, alternated; wall time and peak memory of the whole process tree.

    python bench/data_prep.py --size small --input DIR ... [--size large --input DIR ...] [--baseline 2fd91a5]
        [--rounds 2] [--tasks N] [--memory-cap-gb 18]

Each ``--size NAME`` starts a new input set; the ``--input`` flags after it belong to it. The baseline commit (the
last one with the in-memory pipeline) is checked out with ``git worktree`` into a temporary folder and run with the
same Python environment. Every run is ``data_prep/prepare_corpus.py`` in a child process into a fresh output folder;
a sampler reads the resident memory of the child and all its descendants every 0.2 s (``psutil``) and records the
peak of their sum ("tree") and of the largest process ("one"). A run whose tree passes ``--memory-cap-gb`` is
killed and reported as such (the machine must stay usable). Then: documents kept and removed as duplicates (from
the manifests) and how many kept documents differ between the two pipelines (decoded shards, tag lines included).
Check ``uptime`` first: a figure taken while another job loads the CPU is not a result.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(command: list[str], env: dict, cap_bytes: float) -> dict:
    import psutil
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = {"tree": 0, "one": 0, "killed": False}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                procs = [root] + root.children(recursive=True)
                sizes = []
                for p in procs:
                    try:
                        sizes.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                peak["tree"], peak["one"] = max(peak["tree"], sum(sizes)), max([peak["one"], *sizes])
                if sum(sizes) > cap_bytes:
                    peak["killed"] = True
                    for p in procs[::-1]:
                        try:
                            p.kill()
                        except psutil.Error:
                            pass
            except psutil.Error:
                pass
            done.wait(0.2)

    start = time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - start
    done.set()
    thread.join()
    return {"wall_s": wall, "peak_tree_gb": peak["tree"] / 1e9, "peak_one_gb": peak["one"] / 1e9,
            "killed": peak["killed"], "returncode": proc.returncode, "tail": output[-1500:]}


def kept_documents(out: Path, eos: int, decode) -> list[str]:
    import mindspore.dataset as ds
    import numpy as np
    docs = []
    for shard in sorted(out.glob("*.mindrecord")):
        windows = [r[0] for r in ds.MindDataset([str(shard)], shuffle=False).create_tuple_iterator(output_numpy=True)]
        ids = np.concatenate([windows[0]] + [w[1:] for w in windows[1:]])
        ends = np.flatnonzero(ids == eos)
        start = 0
        for end in ends:
            if end > start:
                docs.append(decode(ids[start:end].tolist()))
            start = end + 1
    return docs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", action="append", required=True, help="a name for the input set that follows")
    p.add_argument("--input", type=Path, action="append", required=True, help="an input of the current set")
    p.add_argument("--baseline", default="2fd91a5",
                   help="the commit with the one-process pipeline (default 2fd91a5)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per size (default 2)")
    p.add_argument("--sides", choices=("both", "datatrove", "one-process"), default="both",
                   help="which pipelines to run (default both)")
    p.add_argument("--tasks", type=int, help="--tasks for the datatrove pipeline (default: its own)")
    p.add_argument("--memory-cap-gb", type=float, default=18.0, help="kill a run whose tree passes this (default 18)")
    p.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared/tokenizer/codegeex",
                   help="tokenizer directory (default ../shared/tokenizer/codegeex)")
    p.add_argument("--seq-len", type=int, default=2048, help="--seq-len (default 2048)")
    # the input sets, in the order given on the command line
    sets, current = {}, None
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--size":
            current = argv[i + 1]
            sets[current] = []
        elif arg == "--input":
            if current is None:
                p.error("--input before any --size")
            sets[current].append(argv[i + 1])
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_data_prep_"))
    results = []
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(work / "baseline"), args.baseline],
                       check=True, capture_output=True)
        sides = {"datatrove (this checkout)": ROOT, f"one process ({args.baseline})": work / "baseline"}
        if args.sides != "both":
            sides = {name: tree for name, tree in sides.items() if (tree == ROOT) == (args.sides == "datatrove")}
        print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
        for size, inputs in sets.items():
            for r in range(args.rounds):
                order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
                for name, tree in order:
                    out = work / f"out-{size}-{r}-{'new' if tree == ROOT else 'old'}"
                    command = [sys.executable, str(tree / "data_prep" / "prepare_corpus.py"), "--tokenizer",
                               str(args.tokenizer), "--out", str(out), "--seq-len", str(args.seq_len)]
                    for i in inputs:
                        command += ["--input", i]
                    if tree == ROOT and args.tasks:
                        command += ["--tasks", str(args.tasks)]
                    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
                    result = measure(command, env, args.memory_cap_gb * 1e9)
                    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() \
                        else None
                    results.append({"size": size, "round": r + 1, "side": name, "out": out, "manifest": manifest,
                                    **result})
                    state = "killed at the memory cap" if result["killed"] else f"exit {result['returncode']}"
                    print(f"  {size} round {r + 1} {name}: {result['wall_s']:.1f} s, tree {result['peak_tree_gb']:.2f} "
                          f"GB, one process {result['peak_one_gb']:.2f} GB ({state})", flush=True)
                    if result["returncode"] != 0 and not result["killed"]:
                        print(result["tail"])
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
        report(results, args, sets)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: list[dict], args, sets: dict) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from codegeex_ms.tokenizer import load
    tokenizer = load(args.tokenizer)
    workers = os.cpu_count()
    print("\n| size | source MB kept | round | side | wall s | peak RSS, tree GB | peak RSS, one process GB | "
          "MB/s per worker | kept | removed as duplicates | tokens |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m = r["manifest"]
        if m is None:
            print(f"| {r['size']} | | {r['round']} | {r['side']} | {r['wall_s']:.0f} | {r['peak_tree_gb']:.2f} | "
                  f"{r['peak_one_gb']:.2f} | | {'killed at the cap' if r['killed'] else 'failed'} | | |")
            continue
        langs = m["languages"].values()
        kept = sum(c.get("kept", 0) for c in langs)
        dups = sum(c.get("dropped_exact_duplicate", 0) + c.get("dropped_near_duplicate", 0) for c in langs)
        source_mb = sum(c.get("bytes", 0) for c in langs) / 1e6
        tokens = m["splits"]["train"]["tokens"] + m["splits"]["validation"]["tokens"]
        print(f"| {r['size']} | {source_mb:.0f} | {r['round']} | {r['side']} | {r['wall_s']:.0f} | "
              f"{r['peak_tree_gb']:.2f} | {r['peak_one_gb']:.2f} | {source_mb / r['wall_s'] / workers:.2f} | "
              f"{kept:,} | {dups:,} | {tokens:,} |")
    for size in sets:
        new = next((r for r in results if r["size"] == size and r["manifest"] and "datatrove" in r["side"]), None)
        old = next((r for r in results if r["size"] == size and r["manifest"] and "one process" in r["side"]), None)
        if new and old:
            a = kept_documents(new["out"], tokenizer.eos_id, tokenizer.decode)
            b = kept_documents(old["out"], tokenizer.eos_id, tokenizer.decode)
            from collections import Counter
            only_new, only_old = Counter(a) - Counter(b), Counter(b) - Counter(a)
            print(f"{size}: {len(a):,} documents kept by datatrove, {len(b):,} by the one-process pipeline; "
                  f"{sum(only_new.values())} only in datatrove's shards, {sum(only_old.values())} only in the other's "
                  f"(transitive clusters remove more; the survivor of a cluster differs)")


if __name__ == "__main__":
    sys.exit(main())
