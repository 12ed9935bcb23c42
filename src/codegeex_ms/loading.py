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
    """An opened model: its tokenizer, how many positions it holds, and ``generator()`` to decode with it, the same
    call for a checkpoint and an exported graph."""
    folder: Path
    tokenizer: object
    context: int                        # positions the model (or the exported graph's cache) holds
    model: object = None                # a checkpoint's network (None for an exported graph)
    graph: object = None                # an exported graph's Generator (batch and cache fixed at export)

    @property
    def fixed_batch_size(self) -> int | None:
        """An exported graph's batch (fixed at export); None for a checkpoint."""
        return None if self.graph is None else self.graph.batch_size

    def generator(self, batch_size: int | None = None, max_len: int | None = None,
                  candidates: int | None = None):
        """A ``generation.Generator`` of ``batch_size`` rows (default: an exported graph's own batch, else 1) over a
        KV cache of ``max_len`` positions (default: the whole context; a cache no longer than the work needs is
        faster, since every decode step attends over all of it) keeping ``candidates`` top logits for sampling.
        An exported graph's batch, cache and candidates are fixed at export: a smaller batch leaves rows idle, a
        larger batch or cache is refused (CheckpointError naming the re-export)."""
        if self.model is not None:
            from .generation import DEFAULT_CANDIDATES, Generator
            return Generator(self.model, self.tokenizer, batch_size=batch_size or 1, max_len=max_len or self.context,
                             candidates=candidates or DEFAULT_CANDIDATES)
        fixed = self.graph
        if (batch_size or 0) > fixed.batch_size:
            raise CheckpointError(f"{self.folder}: {batch_size} rows do not fit the batch size {fixed.batch_size} "
                                  f"the graph was exported with (re-export with --batch-size {batch_size})")
        if (max_len or 0) > fixed.max_len:
            raise CheckpointError(f"{self.folder}: a {max_len}-token cache does not fit the {fixed.max_len} tokens "
                                  f"the graph was exported with (re-export with --max-len {max_len})")
        if candidates not in (None, fixed.candidates):
            raise CheckpointError(f"{self.folder}: the graph was exported with {fixed.candidates} sampling "
                                  f"candidates, not {candidates}")
        return fixed


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
        graph, meta = load_mindir_generator(folder, tok)
        return InferenceModel(folder, tok, meta["max_len"], graph=graph)
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
