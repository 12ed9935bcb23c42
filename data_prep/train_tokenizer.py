"""Train a sentencepiece tokenizer for code (byte-fallback BPE) on a corpus of source files.

    python data_prep/train_tokenizer.py --corpus path/to/src [--corpus more/src] --vocab-size 16384 --out tok/
    python data_prep/train_tokenizer.py --corpus data/corpus/manifest.json --vocab-size 16384 --out tok/

Every file of a known language (by extension, or ``#!`` line) is prefixed with its CodeGeeX language-tag
line, as in pre-training. The result loads with ``codegeex_ms.tokenizer.load(out)`` and has the same
interface as the CodeGeeX tokenizer.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

from codegeex_ms.cli import ArgumentParser, UsageError, run

from tqdm import tqdm

from codegeex_ms.fileio import atomic_write_text
from codegeex_ms.data.collect import SourceFile, collect
from codegeex_ms.languages import add_language_tag
from codegeex_ms.tokenizer import TokenizerError, load
from codegeex_ms.tokenizer.spm import chunk_document, train_sentencepiece


def expand_manifests(roots: list[Path]) -> list[Path]:
    """A manifest.json written by prepare_corpus.py stands for the source trees it was built from."""
    expanded = []
    for root in roots:
        if root.is_file() and root.name.endswith(".json"):
            try:
                command = json.loads(root.read_text())["command"]
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"--corpus {root} is not a manifest.json of data_prep/prepare_corpus.py") from None
            inputs = [Path(value) for flag, value in zip(command, command[1:]) if flag == "--input"]
            if not inputs:
                raise UsageError(f"--corpus {root}: its recorded command names no --input")
            expanded += inputs
        else:
            expanded.append(root)
    return expanded


def sample_source_files(roots: list[Path], max_bytes: int) -> list[SourceFile]:
    """Source files of the training languages under the roots (directories, archives, files), taken in an order
    that mixes the trees (a hash of each file's label) until ``max_bytes``, so that a byte budget samples every
    language instead of the first tree."""
    files = sorted(collect(expand_manifests(roots)), key=lambda f: hashlib.sha1(f.label.encode()).digest())
    sample, total = [], 0
    for f in files:
        if total >= max_bytes:
            break
        if f.text.strip():
            sample.append(f)
            total += len(f.text.encode())
    return sample


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--corpus", type=Path, action="append", required=True,
                   help="a directory (searched recursively), a source file, or the manifest.json of a "
                        "prepared corpus (its input trees are used); repeat for several")
    p.add_argument("--vocab-size", type=int, required=True, help="number of tokens, byte pieces and specials included")
    p.add_argument("--out", type=Path, required=True,
                   help="output directory (gets tokenizer.model and train_meta.json)")
    p.add_argument("--max-bytes", type=int, default=1 << 30,
                   help="stop reading the corpus after this many bytes (default 1 GiB)")
    p.add_argument("--seed", type=int, default=0, help="sentencepiece's random seed (sampling of sentences)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    languages, total = Counter(), 0
    documents = []
    for f in tqdm(sample_source_files(args.corpus, args.max_bytes), desc="chunking", unit="file"):
        documents.extend(chunk_document(add_language_tag(f.text, f.language)))
        languages[f.language] += 1
        total += len(f.text.encode())
    if not documents:
        raise UsageError(f"no source files of a known language under {', '.join(map(str, args.corpus))}")
    try:
        train_sentencepiece(documents, args.vocab_size, args.out, seed=args.seed)
    except RuntimeError as e:   # sentencepiece's own message (e.g. a vocabulary larger than the corpus allows)
        raise TokenizerError(f"training failed: {e}") from None
    tok = load(args.out)
    meta = {"command": sys.argv, "corpus": [str(c) for c in args.corpus], "files_per_language": dict(languages),
            "bytes": total, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id, "tokenizer": tok.identity()}
    atomic_write_text(args.out / "train_meta.json", json.dumps(meta, indent=2) + "\n")
    print(f"trained a {tok.vocab_size}-token sentencepiece tokenizer on {sum(languages.values())} files "
          f"({total / 1e6:.1f} MB, {len(languages)} languages) in {time.time() - start:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
