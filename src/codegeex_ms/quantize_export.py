"""Offline int8 weight-only quantization of a checkpoint folder, and export to MindIR for serving.

    python -m codegeex_ms.quantize_export quantize ckpt/codegeex-13b ckpt/codegeex-13b-int8 [--dtype float16]
    python -m codegeex_ms.quantize_export export ckpt/codegeex-13b-int8 mindir/codegeex-13b-int8 --batch-size 1
    python infer.py --mindir mindir/codegeex-13b-int8 --prompt "def f(x):" --lang python

Symmetric per-output-row absmax, as the original CodeGeeX's quantization: for each of the six
Linear weights of every layer (q, k, v, out-proj, MLP in, MLP out), ``scale[o] = max_i |W[o, i]| / 127`` and
``W_int8 = round(W / scale)``. Embeddings, LayerNorms, biases and the tied head keep their dtype. The output is
a new self-describing folder whose config records ``precision.weight_quant: int8``; ``infer.py --checkpoint``
runs it with Linear layers that multiply by the int8 weights and apply the row scales to the result.
The transform streams tensor by tensor and writes into a temporary folder renamed at the end. ``--dtype``
also casts the tensors that stay in floating point (embeddings, LayerNorms, biases) to float16 or float32.

Export writes one MindIR graph (``model.mindir``) of the cached generation step (``generation.CachedCodeGeeX``):
the KV cache lives in the graph as parameters updated in place, and the token input has a dynamic length, so
the same graph does the prefill (chunks of 64 to 256 tokens) and every decode step (one token), with sampling
inside.
Next to it: ``export.json`` (inputs, shapes, dtypes, batch size, context, tokenizer reference and sha256),
``config.yaml`` and ``tokenizer.json``. The folder is built under a temporary name and swapped in at the end, so
an export into an existing folder never leaves a mix of old and new files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .cli import ArgumentParser, refuse_existing, positive_int, run
from .fileio import staged_folder
from .checkpoint import (BUNDLED_TOKENIZER_DIR, CONFIG_FILE, CheckpointError, WEIGHTS_FILE, bundle_tokenizer,
                         check_weights, quantize_rows, read_config, tokenizer_path, write_folder)
from .layout import EMBEDDING, is_quantized_weight, parameter_shapes
from .loading import EXPORT_FILE, EXPORT_FORMAT, GRAPH_FILE, load_tokenizer
from .safetensors_io import SafetensorsReader


FLOAT_DTYPES = {"float16": np.float16, "float32": np.float32}


def quantize_checkpoint(src: Path, out: Path, progress=None, dtype: str | None = None,
                        bundle: bool = False, embedding: bool = True) -> Path:
    """Write an int8 weight-only copy of the checkpoint folder ``src`` to ``out`` (which must not exist);
    ``dtype`` (float16/float32) also casts the floating-point tensors that are not quantized; ``embedding``
    (default): the word embedding (the tied output head) becomes int8 with per-row scales too; False keeps it
    float. A ``src`` whose Linears are
    int8 already takes ``embedding`` only: its int8 Linears and their scales are copied as they are."""
    cfg = read_config(src)
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"--dtype {dtype} is not supported; choose from {', '.join(FLOAT_DTYPES)}")
    linears_done = cfg.precision.weight_quant != "none"
    if linears_done and not (embedding and cfg.precision.embedding_quant == "none"):
        raise CheckpointError(f"{src} is already quantized ({cfg.precision.weight_quant}"
                              f"{', embedding int8' if cfg.precision.embedding_quant != 'none' else ''})"
                              f"{'' if cfg.precision.embedding_quant != 'none' else '; only --embedding int8 applies'}")
    if out.exists():
        raise CheckpointError(f"{out} already exists; choose a new output folder")
    reader = SafetensorsReader(src / WEIGHTS_FILE)
    check_weights(reader, cfg)
    embedding_quant = "int8" if embedding else "none"
    quantized_cfg = cfg.replace(precision={"weight_quant": "int8", "embedding_quant": embedding_quant})

    def to_quantize(name: str) -> bool:
        return (is_quantized_weight(name) and not linears_done) or (embedding and name == EMBEDDING)

    specs = []
    for name, shape in parameter_shapes(cfg.model, "int8", embedding_quant).items():
        if is_quantized_weight(name) or (embedding and name == EMBEDDING):
            specs.append((name, shape, np.int8))
        elif name.endswith(".weight_scale"):
            specs.append((name, shape, np.float32))
        else:
            specs.append((name, shape, FLOAT_DTYPES[dtype] if dtype else reader.dtype(name)))
    cast = {name: dt for name, _, dt in specs}
    pending_scale: dict[str, np.ndarray] = {}

    def fetch(name: str) -> np.ndarray:
        if name.endswith(".weight_scale"):
            return pending_scale.pop(name) if name in pending_scale else reader.get(name)
        if to_quantize(name):
            q, scale = quantize_rows(reader.get(name))
            pending_scale[name + "_scale"] = scale
            return q
        return reader.get(name).astype(cast[name], copy=False)

    with staged_folder(out) as tmp:
        write_folder(tmp, quantized_cfg, specs, fetch, tokenizer=tokenizer_path(src), progress=progress)
        if bundle:
            bundle_tokenizer(tmp)
    return out




def export_mindir(src: Path, out: Path, batch_size: int = 1, max_len: int | None = None,
                  candidates: int = 1024, compute_dtype: str | None = None) -> Path:
    """Export the cached generation step of checkpoint ``src`` to MindIR in the folder ``out``."""
    import mindspore as ms
    from mindspore import Tensor
    from . import checkpoint
    from .generation import PREFILL_BUCKET, PREFILL_CHUNK, CachedCodeGeeX

    cfg = read_config(src)                      # a clear error when config.yaml is missing
    dtype = compute_dtype or cfg.precision.compute_dtype
    if dtype == "bfloat16" and ms.get_context("device_target") == "CPU":
        raise CheckpointError(f"{src}: compute dtype bfloat16 does not run on CPU; pass --compute-dtype float32 "
                              "or float16, or export on Ascend")
    tokenizer = load_tokenizer(src, fix="the exported folder needs one (convert the checkpoint with --tokenizer)")
    if tokenizer.vocab_size != cfg.model.vocab_size or tokenizer.eos_id != cfg.model.eod_token_id:
        raise CheckpointError(f"{src}: its tokenizer {tokenizer_path(src)} ({tokenizer.vocab_size} tokens, EOS "
                              f"{tokenizer.eos_id}) "
                              f"does not match the model (vocab_size {cfg.model.vocab_size}, eod_token_id "
                              f"{cfg.model.eod_token_id})")
    max_len = max_len or cfg.model.max_position_embeddings
    if batch_size < 1:
        raise CheckpointError(f"--batch-size must be >= 1, got {batch_size}")
    from . import kernels
    with kernels.disabled():        # the CPU kernels are a library of this machine: not part of a portable graph
        model = checkpoint.load(src, precision={"compute_dtype": dtype} if compute_dtype else None)
        step = CachedCodeGeeX(model, batch_size, max_len, candidates)
    k = step.sampler.candidates
    b = batch_size
    inputs = [("tokens", [b, -1], "int32"), ("start", [b], "int32"), ("last_index", [b], "int32"),
              ("noise", [b, k], "float32"), ("temperature", [b], "float32"), ("top_k", [b], "int32"),
              ("top_p", [b], "float32")]
    ms_dtypes = {"int32": ms.int32, "float32": ms.float32}
    args = [Tensor(shape=[batch_size, None], dtype=ms.int32)] + [
        Tensor(np.zeros([d if d > 0 else 1 for d in shape], dtype=np.dtype(dt)), ms_dtypes[dt])
        for _, shape, dt in inputs[1:]]
    with staged_folder(out) as tmp:
        tmp.mkdir(parents=True)
        ms.export(step, *args, file_name=str(tmp / GRAPH_FILE[:-len(".mindir")]), file_format="MINDIR")
        if not (tmp / GRAPH_FILE).is_file():
            raise CheckpointError(f"MindSpore wrote no {GRAPH_FILE} into {tmp}")
        shutil.copy(src / CONFIG_FILE, tmp / CONFIG_FILE)
        shutil.copy(src / "tokenizer.json", tmp / "tokenizer.json")
        if (src / BUNDLED_TOKENIZER_DIR).is_dir():
            shutil.copytree(src / BUNDLED_TOKENIZER_DIR, tmp / BUNDLED_TOKENIZER_DIR)
        meta = {"format": EXPORT_FORMAT, "graph": GRAPH_FILE, "source_checkpoint": str(src.resolve()),
                "batch_size": batch_size, "max_len": max_len, "candidates": k, "compute_dtype": dtype,
                "weight_quant": cfg.precision.weight_quant, "prefill_bucket": PREFILL_BUCKET,
                "prefill_chunk": PREFILL_CHUNK,
                "inputs": [{"name": n, "shape": sh, "dtype": dt} for n, sh, dt in inputs],
                "outputs": [{"name": "next_ids", "shape": [batch_size], "dtype": "int32"}],
                "tokenizer": tokenizer.identity(), "eos_id": tokenizer.eos_id,
                "note": "prefill: the rows' prompts, right-padded, in calls of at most prefill_chunk positions "
                        "(each call's length prefill_bucket doubled until the rest fits, at most prefill_chunk and "
                        "max_len), start = the call's first position, last_index = the row's last prompt position "
                        "minus start (the row's next token is the one sampled in the call that holds it); decode: "
                        "one token per row at that row's position; the KV cache is state inside the graph (a new "
                        "prefill overwrites it from position 0)"}
        (tmp / EXPORT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m codegeex_ms.quantize_export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="write an int8 weight-only copy of a checkpoint folder",
                       description="Write an int8 weight-only copy of a checkpoint folder.")
    q.add_argument("src", type=Path, help="checkpoint folder (config.yaml + model.safetensors)")
    q.add_argument("out", type=Path, help="new folder for the int8 checkpoint")
    q.add_argument("--dtype", choices=sorted(FLOAT_DTYPES),
                   help="also cast the tensors that stay floating point (default: keep their dtype)")
    q.add_argument("--bundle-tokenizer", action="store_true",
                   help="copy the tokenizer files into OUT/tokenizer/ (a self-contained folder to ship)")
    q.add_argument("--embedding", choices=("int8", "keep"), default="int8",
                   help="the word embedding, which is also the output head: int8 with per-row scales (default: a "
                        "quarter of the fp32 bytes, faster CPU decoding; on the embedded model's held-out "
                        "HumanEval-X programs 99.70%% top-1 agreement with the float head and perplexity -0.03%%) "
                        "or keep its float dtype (precision.embedding_quant; the float head then decodes on the CPU "
                        "through an int8 copy made at load, drawing exactly what the float head draws)")
    e = sub.add_parser("export", help="export the cached generation step of a checkpoint to a MindIR folder",
                       description="Export the cached generation step of a checkpoint to a MindIR folder.")
    e.add_argument("src", type=Path, help="checkpoint folder (fp32, fp16 or int8)")
    e.add_argument("out", type=Path, help="new output folder (an existing one is refused unless --overwrite)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace OUT as a whole if it exists (atomically: the old folder goes only once the new one "
                        "is complete)")
    e.add_argument("--batch-size", type=positive_int, default=1, help="sequences decoded together (default 1)")
    e.add_argument("--max-len", type=positive_int, help="KV-cache length = longest prompt + completion (default: the "
                                                "model's context)")
    e.add_argument("--candidates", type=positive_int, default=1024, help="logits kept for sampling (default 1024)")
    e.add_argument("--compute-dtype", choices=("float32", "float16", "bfloat16"),
                   help="override the checkpoint's compute dtype (bfloat16 only on Ascend)")
    e.add_argument("--device", choices=("CPU", "GPU", "Ascend"), help="MindSpore device (default: its choice)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from tqdm import tqdm
    args = parse_args(argv)
    start = time.time()
    if args.command == "export":
        import mindspore as ms
        ms.set_context(mode=ms.GRAPH_MODE)
        if args.device:
            ms.set_device(args.device)
        refuse_existing(args.out, args.overwrite)
        export_mindir(args.src, args.out, args.batch_size, args.max_len, args.candidates, args.compute_dtype)
        size = (args.out / GRAPH_FILE).stat().st_size
        print(f"exported {args.src} -> {args.out}/{GRAPH_FILE} ({size / 1e6:.1f} MB) in {time.time() - start:.1f}s")
        return 0
    bars = []                   # the bar starts with the first tensor, after the checks (a bad input prints one line)

    def progress(_):
        if not bars:
            bars.append(tqdm(desc="quantize", unit="tensor"))
        bars[0].update()

    try:
        quantize_checkpoint(args.src, args.out, progress=progress, dtype=args.dtype, bundle=args.bundle_tokenizer,
                            embedding=args.embedding == "int8")
    finally:
        for bar in bars:
            bar.close()
    before = (args.src / WEIGHTS_FILE).stat().st_size
    after = (args.out / WEIGHTS_FILE).stat().st_size
    print(f"quantized {args.src} -> {args.out}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB "
          f"({after / before:.2f}x) in {time.time() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
