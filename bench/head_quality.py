"""What the int8 output head costs: a checkpoint with a float word embedding (the tied head) against its copy with
the embedding in int8 (``quantize --embedding int8``), on held-out documents: top-1 agreement of the next-token
argmax and perplexity, per language and overall.

    python bench/head_quality.py --checkpoint checkpoints/codegeex-mini [--data-dir ../shared/datasets/humaneval-x]

The documents are HumanEval-X's canonical programs (language tag, prompt, canonical solution; 6 x 164), which no
checkpoint of this project was trained on. Each document is scored from an EOD in windows of the model's context
(teacher forcing, full forward), the same tokens for both copies. The int8 copy is written to a temporary folder
(``quantize_export.quantize_checkpoint(..., embedding=True)``; a folder with int8 Linears keeps them as they are).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

from tokenizer_choice import document_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("python", "cpp", "java", "js", "go", "rust")


def documents(data_dir: Path) -> tuple[list[str], list[str]]:
    from codegeex_ms.humaneval.dataset import generation_prompt, load_problems
    docs, langs = [], []
    for lang in LANGUAGES:
        for problem in load_problems(data_dir, lang).values():
            docs.append(generation_prompt(problem, lang) + problem["canonical_solution"])
            langs.append(lang)
    return docs, langs


def main(argv=None) -> int:
    import mindspore as ms
    from codegeex_ms import checkpoint
    from codegeex_ms.quantize_export import quantize_checkpoint
    from codegeex_ms.tokenizer import load
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "codegeex-mini",
                   help="a checkpoint folder with a float word embedding (default: the embedded model)")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "humaneval-x",
                   help="HumanEval-X data (humaneval_<lang>.jsonl.gz; default ../shared/datasets/humaneval-x)")
    p.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = p.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    docs, langs = documents(args.data_dir)
    int8_head = Path(tempfile.mkdtemp(prefix="head-int8-")) / "model"
    quantize_checkpoint(args.checkpoint, int8_head, embedding=True)
    scores = {}
    for name, folder in (("float head", args.checkpoint), ("int8 head", int8_head)):
        model = checkpoint.load(folder)
        scores[name] = document_scores(model, load(checkpoint.tokenizer_path(args.checkpoint)), docs)
    results = {}
    for lang in LANGUAGES + ("all",):
        picked = [i for i, doc_lang in enumerate(langs) if lang in ("all", doc_lang)]
        row = {}
        for name, per_doc in scores.items():
            nats = sum(per_doc[i][0] for i in picked)
            tokens = sum(per_doc[i][1] for i in picked)
            row[name] = {"tokens": tokens, "perplexity": math.exp(nats / tokens)}
        same = sum(int((scores["float head"][i][2] == scores["int8 head"][i][2]).sum()) for i in picked)
        row["top1_agreement"] = same / row["float head"]["tokens"]
        row["perplexity_change"] = row["int8 head"]["perplexity"] / row["float head"]["perplexity"] - 1
        results[lang] = row
    print("| language | tokens | perplexity, float head | perplexity, int8 head | change | top-1 agreement |")
    print("|---|---|---|---|---|---|")
    for lang, row in results.items():
        print(f"| {lang} | {row['float head']['tokens']:,} | {row['float head']['perplexity']:.3f} | "
              f"{row['int8 head']['perplexity']:.3f} | {100 * row['perplexity_change']:+.3f}% | "
              f"{100 * row['top1_agreement']:.2f}% |")
    if args.out:
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
