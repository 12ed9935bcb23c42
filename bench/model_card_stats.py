"""Figures for a model card: validation loss per language (nats/token, bits/byte) of a checkpoint and, with
--quantized, of its int8 copy, plus the int8 copy's top-1 agreement with the original on the same tokens.

    python bench/model_card_stats.py --data DATA --checkpoint RUN/checkpoints/step-N \\
        --quantized checkpoints/codegeex-mini --docs-per-language 40 --out stats.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from tokenizer_choice import document_scores, validation_documents  # noqa: E402


def language_of(doc: str) -> str:
    from codegeex_ms.languages import LANGUAGE_TAGS
    first = doc.split("\n", 1)[0]
    for name, tag in LANGUAGE_TAGS.items():
        if first == tag:
            return name
    return "untagged"


def main(argv=None) -> int:
    import mindspore as ms
    from codegeex_ms import checkpoint
    from codegeex_ms.tokenizer import load
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--quantized", type=Path)
    p.add_argument("--docs-per-language", type=int, default=40,
                   help="validation documents per language (the first ones of the split)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    everything = validation_documents(args.data, 10**9)
    taken = defaultdict(int)
    docs, languages = [], []
    for doc in everything:
        lang = language_of(doc)
        if taken[lang] < args.docs_per_language:
            taken[lang] += 1
            docs.append(doc)
            languages.append(lang)
    results = {}
    predictions = {}
    for name, folder in (("fp32", args.checkpoint), ("int8", args.quantized)):
        if folder is None:
            continue
        model = checkpoint.load(folder)
        tokenizer = load(checkpoint.tokenizer_path(folder))
        scores = document_scores(model, tokenizer, docs)
        predictions[name] = [s[2] for s in scores]
        per = defaultdict(lambda: [0.0, 0, 0, 0])
        for lang, doc, (nats, tokens, _) in zip(languages, docs, scores):
            for key in (lang, "all"):
                per[key][0] += nats
                per[key][1] += tokens
                per[key][2] += len(doc.encode())
                per[key][3] += 1
        results[name] = {lang: {"documents": d, "tokens": t, "bytes": b, "nats_per_token": n / t,
                                "bits_per_byte": n / b / math.log(2)} for lang, (n, t, b, d) in per.items()}
    if len(predictions) == 2:
        same = sum(int((a == b).sum()) for a, b in zip(predictions["fp32"], predictions["int8"]))
        total = sum(a.size for a in predictions["fp32"])
        results["int8_top1_agreement"] = same / total
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
