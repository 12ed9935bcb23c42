"""Encode throughput of the CodeGeeX tokenizer, side by side with the original's behaviour in the same run.

    python bench/tokenizer_throughput.py --tokenizer ../shared/tokenizer/codegeex [--source DIR] [--megabytes 4]

Reference ("original"): ``codegeex/tokenizer/tokenizer.py``'s CodeGeeXTokenizer over
``transformers.AutoTokenizer.from_pretrained(DIR)`` (needs ``pip install transformers`` and
``pip install --no-deps codegeex==1.0``). Input: real source files (default: this Python's standard library).
Reports MB/s of source and tokens/s, single text at a time and as one batch on all cores, and checks that
both produce identical ids.
"""
from __future__ import annotations

import argparse
import os
import sysconfig
import time
from pathlib import Path

from codegeex_ms.tokenizer import load
from codegeex_ms.tokenizer.codegeex import encode_whitespaces
from reference import load_original


def read_sources(root: Path, megabytes: float) -> list[str]:
    texts, size = [], 0
    for path in sorted(root.rglob("*.py")):
        if "test" in path.parts or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        size += len(text.encode())
        if size >= megabytes * 1e6:
            break
    return texts


def original_tokenizer(directory: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    module = load_original("tokenizer/tokenizer.py", "codegeex_original_tokenizer")
    hf = transformers.AutoTokenizer.from_pretrained(str(directory))
    return module.CodeGeeXTokenizer(tokenizer=hf), hf


def best_of(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokenizer", type=Path, default=Path(__file__).resolve().parents[2] / "shared/tokenizer/codegeex",
                   help="CodeGeeX tokenizer directory (default: ../shared/tokenizer/codegeex)")
    p.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                   help="directory of real source files to encode (default: the Python standard library)")
    p.add_argument("--megabytes", type=float, default=4.0, help="how much source to encode (default 4)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    args = p.parse_args()

    texts = read_sources(args.source, args.megabytes)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    ours = load(args.tokenizer)
    original, hf = original_tokenizer(args.tokenizer)

    rows = []
    t, ids_ours = best_of(lambda: [ours.encode(x) for x in texts], args.repeats)
    rows.append(("codegeex-ms", "one text at a time", t, ids_ours))
    t, ids_orig = best_of(lambda: [original.encode_code(x) for x in texts], args.repeats)
    rows.append(("original (transformers)", "one text at a time", t, ids_orig))
    t, ids_batch = best_of(lambda: ours.encode_batch(texts), args.repeats)
    rows.append(("codegeex-ms", f"batch, {os.cpu_count()} cores", t, ids_batch))
    t, ids_orig_batch = best_of(lambda: hf([encode_whitespaces(x) for x in texts]).input_ids, args.repeats)
    rows.append(("original (transformers)", f"batch, {os.cpu_count()} cores", t, ids_orig_batch))

    identical = ids_ours == ids_orig == ids_batch == ids_orig_batch
    tokens = sum(map(len, ids_ours))
    print(f"{len(texts)} files, {mb:.2f} MB, {tokens:,} tokens from {args.source}; identical ids: {identical}")
    print("| tokenizer | mode | MB/s | tokens/s |")
    print("|---|---|---|---|")
    for name, mode, seconds, _ in rows:
        print(f"| {name} | {mode} | {mb / seconds:.2f} | {tokens / seconds:,.0f} |")
    if not identical:
        raise SystemExit("ids differ from the original")


if __name__ == "__main__":
    main()
