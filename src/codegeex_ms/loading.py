"""One way to open a model for inference: a checkpoint folder or an exported MindIR folder, with its tokenizer.

``infer.py``, ``serve.py`` and ``eval_humaneval_x.py`` all go through ``load_for_inference``, so a folder without a
tokenizer, a run folder given as a checkpoint or a graph exported with another tokenizer fails the same way
everywhere (a ``CheckpointError`` naming the folder and the fix).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CheckpointError, tokenizer_path

# an exported folder (python -m codegeex_ms.quantize_export export): the graph and what it was exported with
EXPORT_FORMAT = "codegeex-ms-mindir-1"
GRAPH_FILE, EXPORT_FILE = "model.mindir", "export.json"


def load_tokenizer(folder: str | os.PathLike, override: str | os.PathLike | None = None,
                   fix: str = "pass --tokenizer DIR"):
    """The tokenizer recorded in ``folder`` (``tokenizer.json``), or ``override``; a CheckpointError ending with
    ``fix`` when the folder records none and no override is given."""
    from .tokenizer import load
    ref = override or tokenizer_path(folder)
    if ref is None:
        raise CheckpointError(f"{folder} records no tokenizer (tokenizer.json); {fix}")
    return load(ref)


@dataclass
class InferenceModel:
    folder: Path
    tokenizer: object
    context: int            # tokens the model's positions (or the exported graph's cache) hold
    model: object = None    # a checkpoint's network: build a Generator with the batch and cache you need
    generator: object = None    # an exported graph's Generator (its batch size and cache are fixed)


def load_for_inference(checkpoint: str | os.PathLike | None = None, mindir: str | os.PathLike | None = None,
                       tokenizer: str | os.PathLike | None = None, precision: dict | None = None) -> InferenceModel:
    """Open exactly one of ``checkpoint`` (a folder from convert/quantize/train) or ``mindir`` (an exported folder).
    ``tokenizer`` overrides the folder's recorded one; ``precision`` overrides fields of a checkpoint's precision
    section (e.g. ``{"compute_dtype": "float16"}``, ``{"activation_quant": "int8"}``)."""
    if (checkpoint is None) == (mindir is None):
        raise ValueError("give exactly one of checkpoint and mindir")
    if mindir is not None:
        if precision:
            raise CheckpointError(f"{mindir}: precision overrides apply to checkpoints; an exported graph keeps "
                                  "the ops it was exported with")
        folder = Path(mindir)
        tok = load_tokenizer(folder, tokenizer)
        generator, meta = load_mindir_generator(folder, tok)
        return InferenceModel(folder, tok, meta["max_len"], generator=generator)
    from . import checkpoint as checkpoints
    folder = Path(checkpoint)
    tok = load_tokenizer(folder, tokenizer)
    model = checkpoints.load(folder, precision=precision or None)
    return InferenceModel(folder, tok, model.config.model.max_position_embeddings, model=model)


def load_mindir_generator(folder: Path, tokenizer=None):
    """A ``generation.Generator`` running the exported graph in ``folder`` (``mindspore.load`` + GraphCell)."""
    import mindspore as ms
    from mindspore import nn
    from .generation import PREFILL_CHUNK, Generator
    meta_path = Path(folder) / EXPORT_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{folder} is not an exported model folder: {EXPORT_FILE} is missing")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{meta_path}: format {meta.get('format')!r}, expected {EXPORT_FORMAT!r}")
    if tokenizer is None:
        tokenizer = load_tokenizer(folder)
    if tokenizer.identity().get("sha256") != meta["tokenizer"].get("sha256"):
        raise CheckpointError(f"{folder}: the tokenizer {tokenizer.identity().get('path')} is not the one the graph "
                              f"was exported with ({meta['tokenizer'].get('path')}, sha256 "
                              f"{meta['tokenizer'].get('sha256', '')[:12]})")
    graph = nn.GraphCell(ms.load(str(Path(folder) / meta["graph"])))
    return Generator(None, tokenizer, batch_size=meta["batch_size"], max_len=meta["max_len"],
                     candidates=meta["candidates"], prefill_bucket=meta["prefill_bucket"], step_cell=graph,
                     prefill_chunk=meta.get("prefill_chunk", PREFILL_CHUNK)), meta
