"""Per-rank (sharded) run checkpoints: the Megatron layout as a strategy file, merge to one folder, split again.

Under ``semi_auto_parallel`` on Ascend every rank holds a slice of each split parameter and of its optimizer
moments, so a run checkpoint is one file per rank plus the strategy file that says how the slices fit::

    step-00001000/
        config.yaml  state.json  tokenizer.json      as in a single-device checkpoint
        strategy.ckpt | strategy.json                 MindSpore's layout of every parameter (or ours, see below)
        rank_0/checkpoint_0.ckpt ... rank_{n-1}/checkpoint_{n-1}.ckpt

``merge`` turns that into an ordinary single-device run checkpoint (model.safetensors + optimizer.ckpt +
state.json + config.yaml with a one-device layout) that ``infer.py`` loads and ``train.py --resume`` continues.
``split`` does the reverse, from a single-device checkpoint to the per-rank files of a given layout.
Both go through MindSpore's ``transform_checkpoints`` and write ``.ckpt`` (its safetensors-to-safetensors
column split is wrong in MindSpore 2.9).

``strategy_layout`` writes the layout that the model's ``.shard()`` strategies imply (column-parallel q, k, v
and MLP-in split their output rows, row-parallel dense and MLP-out their input columns, the vocabulary rows
when ``vocab_emb_dp`` is false; optimizer moments like their weights). MindSpore's own strategy file, written
by the compiled Ascend graph, is used when present; ours covers layouts without one (data parallel, tests).

    python -m codegeex_ms.reshard merge RUN/checkpoints/step-00001000 merged/
    python -m codegeex_ms.reshard split merged/ sharded/ --model-parallel 8 --data-parallel 2
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from .cli import ArgumentParser, positive_int, refuse_existing, run
from . import checkpoint
from .checkpoint import OPTIMIZER_FILE, STATE_FILE
from .config import Config
from .fileio import staged_folder
from .layout import LAYER_LINEARS, Split, module_in_layer, parameter_shapes

STRATEGY_FILES = ("strategy.ckpt", "strategy.json")
MOMENT_PREFIXES = ("adam_m.", "adam_v.")


class ReshardError(ValueError):
    """A sharded checkpoint is incomplete or does not fit its strategy or config."""


def rank_file(folder: Path, rank: int) -> Path:
    return folder / f"rank_{rank}" / f"checkpoint_{rank}.ckpt"


def weight_name(name: str) -> str:
    """The parameter an optimizer moment belongs to (``adam_m.X`` -> ``X``); other names as they are."""
    return next((name[len(p):] for p in MOMENT_PREFIXES if name.startswith(p)), name)


def tensor_map(name: str, ndim: int, cfg: Config) -> list[int]:
    """MindSpore tensor map of a parameter (or its ``adam_m.``/``adam_v.`` moment) over the device matrix
    ``[data_parallel, model_parallel]``: 0 names the model-parallel axis, -1 a replicated dimension."""
    name = weight_name(name)
    linear, kind = LAYER_LINEARS.get(module_in_layer(name)), name.rsplit(".", 1)[-1]
    if linear is not None and linear.split is Split.COLUMN:
        return [0, -1] if kind == "weight" else [0]
    if linear is not None and kind == "weight":           # Split.ROW: the input features; the bias is whole
        return [-1, 0]
    if name == "word_embeddings.weight" and not cfg.parallel.vocab_emb_dp:
        return [0, -1]
    return [-1] * ndim


def strategy_layout(cfg: Config, shapes: dict[str, tuple[int, ...]]) -> dict:
    """The strategy (MindSpore's JSON form) of the Megatron layout for the named tensors."""
    p = cfg.parallel
    if p.pipeline_stages > 1 or p.optimizer_shard:
        raise ReshardError("only data_parallel x model_parallel layouts can be written without MindSpore's own "
                           "strategy file (pipeline stages and optimizer sharding change the slices)")
    items = {}
    for name, shape in shapes.items():
        items[name] = {"dev_matrix": [p.data_parallel, p.model_parallel],
                       "tensor_map": tensor_map(name, len(shape), cfg),
                       "param_split_shape": [], "field": 0, "opt_weight_shard_step": 0, "opt_weight_shard_size": 0}
    return {"parallel_layout_item": items}


def strategy_file(folder: Path) -> Path:
    for name in STRATEGY_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ReshardError(f"{folder}: no strategy file ({' or '.join(STRATEGY_FILES)}); it says how the rank "
                       f"slices fit together and is written next to the rank folders by train.py")


def strategy_device_count(path: Path) -> int:
    """Devices the strategy describes (the product of a parameter's device matrix)."""
    import mindspore as ms
    try:
        layouts = ms.parallel.build_searched_strategy(str(path))
    except Exception as e:  # noqa: BLE001 - MindSpore raises several types for a bad file
        raise ReshardError(f"{path}: not a readable strategy file ({type(e).__name__}: {str(e)[:200]})") from None
    counts = {int(np.prod(list(layout.dev_matrix[0].dim))) for layout in layouts.values()}
    if len(counts) != 1:
        raise ReshardError(f"{path}: parameters are laid out over different device counts {sorted(counts)} "
                           f"(pipeline stages); merge the stages' strategy files first")
    return counts.pop()


def merge_pipeline_strategies(files: list[Path], out: Path) -> Path:
    """One strategy file for all pipeline stages from the per-rank files of the stages (MindSpore's
    ``merge_pipeline_strategys``, which reads a folder), written atomically to ``out``."""
    import tempfile
    import mindspore as ms
    with tempfile.TemporaryDirectory() as work:
        for i, f in enumerate(files):
            shutil.copyfile(f, Path(work) / f"stage_file_{i}{f.suffix}")
        tmp = out.with_name(out.name + ".tmp")
        ms.parallel.merge_pipeline_strategys(work, str(tmp))
    os.replace(tmp, out)
    return out


def _copy_metadata(src: Path, dst: Path) -> None:
    """The run state, and the tokenizer reference as an absolute path (a relative one points into ``src``)."""
    if (src / STATE_FILE).is_file():
        shutil.copyfile(src / STATE_FILE, dst / STATE_FILE)
    tokenizer = checkpoint.tokenizer_path(src)
    if tokenizer is not None:
        checkpoint.write_tokenizer_reference(dst, tokenizer)


def merge(sharded: str | os.PathLike, out: str | os.PathLike, log=print) -> Path:
    """Merge a per-rank run checkpoint into one single-device run checkpoint folder at ``out`` (atomically)."""
    import mindspore as ms
    sharded, out = Path(sharded), Path(out)
    cfg = checkpoint.read_config(sharded)
    strategy = strategy_file(sharded)
    # under pipeline stages the (merged) strategy lays each parameter over its stage's devices
    devices = strategy_device_count(strategy) * cfg.parallel.pipeline_stages
    missing = [r for r in range(devices) if not rank_file(sharded, r).is_file()]
    if missing:
        raise ReshardError(f"{sharded}: the strategy lays parameters over {devices} ranks but "
                           f"{', '.join(str(rank_file(sharded, r).relative_to(sharded)) for r in missing[:8])} "
                           f"{'is' if len(missing) == 1 else 'are'} missing")
    with staged_folder(out) as tmp:
        work = tmp / "transform"
        log(f"merging {devices} rank files of {sharded} with {strategy.name}")
        ms.parallel.transform_checkpoints(str(sharded), str(work), "merged", src_strategy_file=str(strategy),
                                          dst_strategy_file=None)
        merged = ms.load_checkpoint(str(work / "rank_0" / "merged0.ckpt"))
        single = cfg.replace(parallel={"data_parallel": 1, "model_parallel": 1, "pipeline_stages": 1,
                                       "micro_batches": 1, "optimizer_shard": False, "optimizer_shard_size": 0,
                                       "vocab_emb_dp": True})
        shapes = parameter_shapes(single.model)
        _check_merged(merged, shapes, sharded)
        weights = {name: merged[name].asnumpy() for name in shapes}
        # a run checkpoint (train.py --resume continues it): the whole config, with the one-device layout
        checkpoint.write_folder(tmp, single, [(n, a.shape, a.dtype) for n, a in weights.items()],
                                weights.__getitem__, tokenizer=None, network_only=False)
        state = [{"name": n, "data": t} for n, t in merged.items() if n not in shapes]
        ms.save_checkpoint(state, str(tmp / OPTIMIZER_FILE))
        shutil.rmtree(work)
        _copy_metadata(sharded, tmp)
    return out


def _check_merged(merged: dict, shapes: dict, source: Path) -> None:
    problems = [f"{n} missing" for n in shapes if n not in merged]
    for name, tensor in merged.items():
        base = weight_name(name)
        if base in shapes and tuple(tensor.shape) != shapes[base]:
            problems.append(f"{name} merged to shape {tuple(tensor.shape)}, the config says {shapes[base]}")
    if problems:
        raise ReshardError(f"{source}: the merged tensors do not match config.yaml (wrong strategy file?): "
                           + "; ".join(problems[:8]))


def split(folder: str | os.PathLike, out: str | os.PathLike, data_parallel: int, model_parallel: int,
          vocab_parallel: bool = False, log=print) -> Path:
    """Split a single-device run checkpoint into the per-rank files of a ``data_parallel x model_parallel``
    layout, with our strategy file, config, state and tokenizer reference (atomically). ``vocab_parallel``:
    the word embedding's rows are split over model_parallel too (``parallel.vocab_emb_dp: false``)."""
    import mindspore as ms
    from .safetensors_io import SafetensorsReader
    folder, out = Path(folder), Path(out)
    cfg = checkpoint.read_config(folder)
    layout = cfg.replace(parallel={"data_parallel": data_parallel, "model_parallel": model_parallel,
                                   "vocab_emb_dp": not vocab_parallel})
    layout.parallel.check(layout.model, device_num=data_parallel * model_parallel)
    with staged_folder(out) as tmp:
        (tmp / "full" / "rank_0").mkdir(parents=True)
        reader = SafetensorsReader(folder / checkpoint.WEIGHTS_FILE)
        checkpoint.check_weights(reader, cfg)
        tensors = [{"name": n, "data": ms.Tensor(np.ascontiguousarray(reader.get(n)))} for n in reader.names]
        if (folder / OPTIMIZER_FILE).is_file():
            tensors += [{"name": n, "data": t} for n, t in ms.load_checkpoint(str(folder / OPTIMIZER_FILE)).items()]
        ms.save_checkpoint(tensors, str(tmp / "full" / "rank_0" / "full0.ckpt"))
        shapes = {t["name"]: tuple(t["data"].shape) for t in tensors}
        (tmp / "strategy.json").write_text(json.dumps(strategy_layout(layout, shapes)))
        log(f"splitting {folder} into {data_parallel * model_parallel} ranks (dp {data_parallel} x mp "
            f"{model_parallel})")
        ms.parallel.transform_checkpoints(str(tmp / "full"), str(tmp / "ranks"), "checkpoint_",
                                          src_strategy_file=None, dst_strategy_file=str(tmp / "strategy.json"))
        for rank_dir in (tmp / "ranks").iterdir():
            os.replace(rank_dir, tmp / rank_dir.name)
        shutil.rmtree(tmp / "full")
        shutil.rmtree(tmp / "ranks")
        layout.save(tmp / checkpoint.CONFIG_FILE)
        _copy_metadata(folder, tmp)
    return out


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m codegeex_ms.reshard", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="per-rank run checkpoint -> one single-device run checkpoint folder",
                       description="Per-rank run checkpoint -> one single-device run checkpoint folder.")
    m.add_argument("sharded", type=Path, help="a step-N folder with rank_*/ files, strategy file and config.yaml")
    m.add_argument("out", type=Path, help="new output folder (an existing one is refused unless --overwrite)")
    m.add_argument("--overwrite", action="store_true", help="replace OUT as a whole (atomically) if it exists")
    s = sub.add_parser("split", help="single-device run checkpoint -> per-rank files for a dp x mp layout",
                       description="Single-device run checkpoint -> per-rank files for a dp x mp layout.")
    s.add_argument("folder", type=Path, help="a checkpoint folder (model.safetensors + config.yaml [+ optimizer.ckpt])")
    s.add_argument("out", type=Path, help="new output folder (an existing one is refused unless --overwrite)")
    s.add_argument("--overwrite", action="store_true", help="replace OUT as a whole (atomically) if it exists")
    s.add_argument("--data-parallel", type=positive_int, default=1, help="data-parallel replicas (default 1)")
    s.add_argument("--model-parallel", type=positive_int, required=True,
                   help="tensor (model) parallel ranks of the target layout")
    s.add_argument("--vocab-parallel", action="store_true",
                   help="split the word embedding's rows over the model-parallel ranks too (vocab_emb_dp false, "
                        "as the 13B layout)")
    args = p.parse_args(argv)
    refuse_existing(args.out, args.overwrite)
    if args.command == "merge":             # a bad input raises a project error, which cli.run prints
        path = merge(args.sharded, args.out)
    else:
        path = split(args.folder, args.out, args.data_parallel, args.model_parallel, args.vocab_parallel)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
