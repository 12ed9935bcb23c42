"""CodeGeeX-13B on one CPU workstation: an int8 checkpoint loaded and decoded by ``infer.py``.

    python bench/decode_13b.py [--folder /tmp/codegeex-13b-int8-random] [--new-tokens 16] [--prompt-file F] [--keep]

Writes a random-weight checkpoint of the released 13B shapes (``model_configs/codegeex_13b.yaml``: 39 layers + the
top query layer, hidden 5120, 52,224-row vocabulary) in the form ``python -m codegeex_ms.quantize_export quantize
--dtype float16 --embedding int8`` gives: int8 Linears and word embedding/head with float32 row scales, float16
LayerNorms, biases and position tables; 12.9 GB, written one tensor at a time, so writing holds one tensor. (No
trained 13B weights are reachable from this machine; the speed and memory of int8 decoding do not depend on the
values.) Then, with the file's pages dropped from the page cache (``posix_fadvise``, so loading reads the disk),
it runs ``infer.py --checkpoint FOLDER --greedy --max-new-tokens N --json`` in a child process and reports the
child's load time, compile time, prefill and decode speed, and its own peak resident memory (``VmHWM``, read in
the child as it ends: ``codegeex_ms.peak_memory``).

fp16 weights (25.7 GB) do not fit a 24 GiB machine; int8 does only because loading puts each tensor straight into
its parameter (one copy). Needs about 13 GB of free disk. Not a test: it takes minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from codegeex_ms.peak_memory import run_script

ROOT = Path(__file__).resolve().parents[1]


def checkpoint_config():
    from codegeex_ms.config import resolve_config
    return resolve_config("codegeex_13b").replace(
        precision={"param_dtype": "float16", "compute_dtype": "float32", "weight_quant": "int8",
                   "embedding_quant": "int8"},
        parallel={"data_parallel": 1, "model_parallel": 1, "optimizer_shard": False, "optimizer_shard_size": 0,
                  "recompute": False})


def write_random_checkpoint(folder: Path, tokenizer: Path) -> float:
    """The 13B int8 folder, one random tensor at a time; returns the seconds taken."""
    from tqdm import tqdm
    from codegeex_ms.checkpoint import write_random
    from codegeex_ms.fileio import staged_folder
    from codegeex_ms.layout import parameter_shapes
    cfg = checkpoint_config()
    total = sum(int(np.prod(s)) for s in parameter_shapes(cfg.model, "int8", "int8").values())   # about: int8
    start = time.perf_counter()
    with tqdm(total=total, unit="param", unit_scale=True, desc="writing 13B int8") as bar, \
            staged_folder(folder) as tmp:
        shapes = parameter_shapes(cfg.model, "int8", "int8")
        write_random(tmp, cfg, tokenizer=str(tokenizer.resolve()), progress=lambda name: bar.update(
            int(np.prod(shapes[name]))))
    return time.perf_counter() - start


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--folder", type=Path, default=Path("/tmp/codegeex-13b-int8-random"),
                   help="where the checkpoint is written (reused when it exists; "
                        "default /tmp/codegeex-13b-int8-random)")
    p.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared/tokenizer/codegeex",
                   help="CodeGeeX tokenizer directory recorded in the folder (default ../shared/tokenizer/codegeex)")
    p.add_argument("--new-tokens", type=int, default=16, help="tokens to decode (default 16)")
    p.add_argument("--prompt", default="def fibonacci(n):\n", help="the prompt (default a Python signature)")
    p.add_argument("--prompt-file", type=Path, help="read the prompt from this file instead (e.g. a long one, to "
                                                    "measure prefill memory)")
    p.add_argument("--keep", action="store_true", help="keep the folder afterwards (default: delete it)")
    args = p.parse_args()

    write_s = None
    if not (args.folder / "model.safetensors").is_file():
        free = shutil.disk_usage(args.folder.parent).free
        if free < 14e9:
            raise SystemExit(f"{args.folder.parent} has {free / 1e9:.1f} GB free; the checkpoint needs about 13 GB")
        write_s = write_random_checkpoint(args.folder, args.tokenizer)
    weights = args.folder / "model.safetensors"
    size_gb = weights.stat().st_size / 1e9
    drop_from_page_cache(weights)
    prompt = args.prompt_file.read_text() if args.prompt_file else args.prompt
    result, peak_rss_kib, wall = run_infer_measured(args.folder, args.new_tokens, prompt)
    t = result["timings"]
    machine_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"| checkpoint | GB | write s | load s | compile s | prefill tokens | prefill s | decode tokens/s "
          f"| peak RSS GiB (of {machine_gib:.0f}) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| 13B int8 (Linears + embedding/head), fp16 rest | {size_gb:.2f} | "
          f"{'-' if write_s is None else f'{write_s:.0f}'} | {t['load_s']:.1f} | {t['compile_s']:.1f} | "
          f"{result['prompt_tokens']} | {t['prefill_s']:.2f} | {t['decode_tokens_per_s']:.2f} | "
          f"{peak_rss_kib / 2**20:.2f} | {wall:.0f} |")
    print(f"{t['generated_tokens']} tokens decoded; load read {size_gb:.1f} GB at "
          f"{size_gb / t['load_s']:.2f} GB/s; peak RSS {peak_rss_kib / 2**20 / (size_gb * 1e9 / 2**30):.2f}x the "
          f"weight bytes")
    if not args.keep:
        shutil.rmtree(args.folder)
    return 0


def run_infer_measured(folder: Path, new_tokens: int, prompt: str) -> tuple[dict, int, float]:
    """infer.py in a child process: (its --json output, the child's own peak RSS in KiB, wall seconds)."""
    args = ["--checkpoint", folder, "--prompt", prompt, "--greedy", "--max-new-tokens", new_tokens, "--json",
            "--device", "CPU"]     # (argv holds 128 KiB)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as log:
        status, peak = run_script(ROOT / "infer.py", args, stdout=out, stderr=log)
        wall = time.perf_counter() - start
        if status != 0:
            log.seek(0)
            raise SystemExit(f"infer.py failed with exit status {status}:\n{log.read()[-3000:]}")
        out.seek(0)
        stdout = out.read()
    return json.loads(stdout[stdout.index("{"):]), peak // 1024, wall

if __name__ == "__main__":
    sys.exit(main())
