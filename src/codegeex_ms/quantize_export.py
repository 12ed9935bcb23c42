"""Offline int8 weight-only quantization of a checkpoint folder.

    python -m codegeex_ms.quantize_export quantize ckpt/codegeex-13b ckpt/codegeex-13b-int8

Symmetric per-output-row absmax, as the original (reference/codegeex.md section 4.1): for each of the six
Linear weights of every layer (q, k, v, out-proj, MLP in, MLP out), ``scale[o] = max_i |W[o, i]| / 127`` and
``W_int8 = round(W / scale)``. Embeddings, LayerNorms, biases and the tied head keep their dtype. The output is
a new self-describing folder whose config records ``precision.weight_quant: int8``; ``infer.py --checkpoint``
runs it with Linear layers that multiply by the int8 weights and apply the row scales to the result.
The transform streams tensor by tensor and writes into a temporary folder renamed at the end.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError, WEIGHTS_FILE, check_weights, read_config, tokenizer_path, write_folder
from .layout import is_quantized_weight, parameter_shapes
from .safetensors_io import SafetensorsReader


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[out, in]`` float -> (int8 ``[out, in]``, float32 scale ``[out]``), symmetric per-row absmax."""
    w = weight.astype(np.float32)
    absmax = np.abs(w).max(axis=1)
    scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def quantize_checkpoint(src: Path, out: Path, progress=None) -> Path:
    """Write an int8 weight-only copy of the checkpoint folder ``src`` to ``out`` (which must not exist)."""
    cfg = read_config(src)
    if cfg.precision.weight_quant != "none":
        raise CheckpointError(f"{src} is already quantized ({cfg.precision.weight_quant})")
    if out.exists():
        raise CheckpointError(f"{out} already exists; choose a new output folder")
    reader = SafetensorsReader(src / WEIGHTS_FILE)
    check_weights(reader, cfg)
    quantized_cfg = cfg.replace(precision={"weight_quant": "int8"})
    specs = []
    for name, shape in parameter_shapes(cfg.model, "int8").items():
        if is_quantized_weight(name):
            specs.append((name, shape, np.int8))
        elif name.endswith(".weight_scale"):
            specs.append((name, shape, np.float32))
        else:
            specs.append((name, shape, reader.dtype(name)))
    pending_scale: dict[str, np.ndarray] = {}

    def fetch(name: str) -> np.ndarray:
        if name.endswith(".weight_scale"):
            return pending_scale.pop(name)
        if is_quantized_weight(name):
            q, scale = quantize_rows(reader.get(name))
            pending_scale[name + "_scale"] = scale
            return q
        return reader.get(name)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_folder(tmp, quantized_cfg, specs, fetch, tokenizer=tokenizer_path(src), progress=progress)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m codegeex_ms.quantize_export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="write an int8 weight-only copy of a checkpoint folder")
    q.add_argument("src", type=Path, help="checkpoint folder (config.yaml + model.safetensors)")
    q.add_argument("out", type=Path, help="new folder for the int8 checkpoint")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from tqdm import tqdm
    args = parse_args(argv)
    start = time.time()
    try:
        with tqdm(desc="quantize", unit="tensor") as bar:
            quantize_checkpoint(args.src, args.out, progress=lambda _: bar.update())
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    before = (args.src / WEIGHTS_FILE).stat().st_size
    after = (args.out / WEIGHTS_FILE).stat().st_size
    print(f"quantized {args.src} -> {args.out}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB "
          f"({after / before:.2f}x) in {time.time() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
