"""int8 weight-only quantization: checkpoint bytes, peak memory, decode speed and quality cost.

    python bench/quantize.py [--config codegeex_350m] [--tokenizer ../shared/tokenizer/codegeex]

Builds fp32 random weights for the config (no trained model of that size exists yet), writes an fp16 copy
(python -m codegeex_ms.convert --dtype float16) and two int8 copies with the other tensors in fp16
(python -m codegeex_ms.quantize_export quantize --dtype float16, with and without --embedding int8), then runs
each variant in its own process for peak resident memory and greedy decode tokens/s (batch 1), and compares each
int8 copy with fp32 on held-out real source files (HumanEval-X solutions): logit error, top-1 agreement,
perplexity. The 13B sizes are computed from the shapes. The speed peers are in bench/decode.py.
"""
from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_variant(folder: Path, compute: str, tokenizer: Path) -> dict:
    """In a fresh process: load, greedy-decode 32 tokens at batch 1; report tokens/s and peak RSS."""
    import mindspore as ms
    import codegeex_ms
    from codegeex_ms.generation import Generator, SamplingConfig
    from codegeex_ms.tokenizer import load
    ms.set_context(mode=ms.GRAPH_MODE)
    precision = {"compute_dtype": compute}
    if compute == "float16":
        precision["param_dtype"] = "float16"
    model = codegeex_ms.load(folder, precision=precision)
    tok = load(tokenizer)
    prompt = tok.encode("# language: Python\ndef quicksort(items):\n    ")
    gen = Generator(model, tok, batch_size=1, max_len=128)
    gen.warmup(len(prompt))
    result = gen.generate(prompt, SamplingConfig(max_new_tokens=32, greedy=True))
    return {"decode_tokens_per_s": result.timings["decode_tokens_per_s"],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def quality(fp32_dir: Path, int8_dir: Path, tokenizer: Path, files: int, tokens: int) -> dict:
    import mindspore as ms
    import codegeex_ms
    from codegeex_ms.tokenizer import load
    ms.set_context(mode=ms.GRAPH_MODE)
    tok = load(tokenizer)
    texts = []
    for lang in ("python", "cpp", "java", "js", "go", "rust"):
        with gzip.open(ROOT.parent / "shared/datasets/humaneval-x" / f"humaneval_{lang}.jsonl.gz", "rt") as f:
            rows = [json.loads(line) for line in f]
        texts += [r["prompt"] + r["canonical_solution"] for r in rows[-files:]]
    # One fixed [files, tokens] batch: a single compiled graph per model (one graph per length would pile up).
    ids = [tok.encode(t) for t in texts]
    batch = np.array([i[:tokens] for i in ids if len(i) >= tokens][:files], np.int32)
    models = {"fp32": codegeex_ms.load(fp32_dir), "int8": codegeex_ms.load(int8_dir)}
    nll = {"fp32": [], "int8": []}
    errors, agree = [], []
    for chunk in range(0, len(batch), 2):                    # [2, tokens] at a time: one graph, bounded memory
        rows = batch[chunk:chunk + 2]
        logits = {name: m(ms.Tensor(rows)).asnumpy() for name, m in models.items()}
        error = np.abs(logits["fp32"] - logits["int8"])
        errors.append((error.mean(), error.max()))
        agree.append((logits["fp32"].argmax(-1) == logits["int8"].argmax(-1)).mean())
        for name, x in logits.items():
            x = x[:, :-1]
            top = x.max(-1)
            lse = np.log(np.exp(x - top[..., None]).sum(-1)) + top
            picked = np.take_along_axis(x, rows[:, 1:, None].astype(np.int64), -1)[..., 0]
            nll[name].append(lse - picked)
    nll = {k: np.concatenate(v) for k, v in nll.items()}
    ppl = {k: float(np.exp(v.mean())) for k, v in nll.items()}
    return {"files": len(batch), "mean_logit_error": float(np.mean([e[0] for e in errors])),
            "max_logit_error": float(max(e[1] for e in errors)), "top1_agreement": float(np.mean(agree)),
            "perplexity_fp32": ppl["fp32"], "perplexity_int8": ppl["int8"],
            "perplexity_change": ppl["int8"] / ppl["fp32"] - 1}


def sizes_13b() -> dict:
    from codegeex_ms.config import resolve_config
    from codegeex_ms.layout import is_quantized_weight, parameter_shapes
    m = resolve_config("codegeex_13b").model
    fp16 = int8 = 0
    for name, shape in parameter_shapes(m, "int8").items():
        n = int(np.prod(shape))
        if is_quantized_weight(name):
            int8 += n
        elif name.endswith("_scale"):
            int8 += 4 * n
        else:
            int8 += 2 * n
    fp16 = 2 * sum(int(np.prod(s)) for s in parameter_shapes(m).values())
    return {"fp16_gb": fp16 / 1e9, "int8_gb": int8 / 1e9, "ratio": int8 / fp16}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="codegeex_350m", help="model config (default codegeex_350m)")
    p.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared/tokenizer/codegeex",
                   help="CodeGeeX tokenizer directory (default ../shared/tokenizer/codegeex)")
    p.add_argument("--files", type=int, default=24, help="held-out source files for the quality check (default 24)")
    p.add_argument("--tokens", type=int, default=128, help="tokens per file (files shorter are skipped; default 128)")
    p.add_argument("--run", nargs=2, metavar=("FOLDER", "COMPUTE_DTYPE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run:
        print(json.dumps(run_variant(Path(args.run[0]), args.run[1], args.tokenizer)))
        return

    import mindspore as ms
    from codegeex_ms import checkpoint
    from codegeex_ms.config import apply_overrides, resolve_config
    from codegeex_ms.convert import main as convert
    from codegeex_ms.model import CodeGeeX
    from codegeex_ms.quantize_export import quantize_checkpoint
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench_quantize_"))
    cfg = apply_overrides(resolve_config(args.config), ["precision.compute_dtype=float32"])
    checkpoint.save(CodeGeeX(cfg), work / "fp32", tokenizer=str(args.tokenizer))
    assert convert([str(work / "fp32"), str(work / "fp16"), "--dtype", "float16"]) == 0
    quantize_checkpoint(work / "fp32", work / "int8", dtype="float16")
    quantize_checkpoint(work / "fp32", work / "int8_emb", dtype="float16", embedding=True)
    variants = (("fp32", "fp32", "float32"), ("fp16 (fp16 compute)", "fp16", "float16"),
                ("int8 Linears, fp16 embeddings (fp32 compute)", "int8", "float32"),
                ("int8 Linears and embedding/head, fp16 rest (fp32 compute)", "int8_emb", "float32"))
    rows = []
    for name, folder, compute in variants:
        out = subprocess.run([sys.executable, __file__, "--tokenizer", str(args.tokenizer), "--run",
                              str(work / folder), compute], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-2000:])
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((name, (work / folder / "model.safetensors").stat().st_size / 1e6, measured))
    big = sizes_13b()
    print(f"| {args.config} variant | checkpoint MB | / fp16 | peak RSS GB | decode tokens/s (batch 1) |")
    print("|---|---|---|---|---|")
    for name, mb, m in rows:
        print(f"| {name} | {mb:.0f} | {mb / rows[1][1]:.2f}x | {m['peak_rss_gb']:.2f} "
              f"| {m['decode_tokens_per_s']:.2f} |")
    print(f"13B by arithmetic: fp16 {big['fp16_gb']:.2f} GB, int8 Linears + fp16 rest {big['int8_gb']:.2f} GB "
          f"({big['ratio']:.3f}x)")
    for folder in ("int8", "int8_emb"):
        q = quality(work / "fp32", work / folder, args.tokenizer, args.files, args.tokens)
        print(f"{folder} vs fp32 on {q['files']} held-out HumanEval-X solutions: mean |logit error| "
              f"{q['mean_logit_error']:.4f}, max {q['max_logit_error']:.4f}, top-1 agreement "
              f"{q['top1_agreement']:.2%}, "
              f"perplexity {q['perplexity_fp32']:.1f} -> {q['perplexity_int8']:.1f} ({q['perplexity_change']:+.3%})")


if __name__ == "__main__":
    main()
