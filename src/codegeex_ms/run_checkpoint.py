"""Checkpoints of a training run, and the all-ranks agreement on which one to resume from.

RUN_DIR/checkpoints/step-00000250/{model.safetensors, config.yaml, optimizer.ckpt, state.json} or, when every rank
holds slices (semi_auto_parallel on Ascend), step-N/{rank_R/checkpoint_R.ckpt, strategy file, config.yaml,
state.json}; ``python -m codegeex_ms.reshard merge`` turns the latter into the former. A checkpoint is written into
a temporary sibling and renamed into place when complete, so a crash never leaves a half checkpoint under a final
name; loading names what is wrong (unreadable, missing tensors, wrong shapes) so that ``train`` can fall back to
the previous one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

from . import checkpoint, reshard
from .checkpoint import OPTIMIZER_FILE, STATE_FILE, CheckpointError
from .fileio import replace_folder
from .model import CodeGeeX
from .parallel import stage_parameter_names, strategy_path
from .run_folder import RunFolder




def _finish_checkpoint(tmp: Path, final: Path, keep: int) -> Path:
    """Put the complete temporary folder in place (fsync, rename) and keep the last ``keep``."""
    replace_folder(tmp, final)
    for old in RunFolder(final.parent.parent).checkpoints()[:-keep]:
        shutil.rmtree(old)
    return final


def save_run_checkpoint(run_dir: Path, model: CodeGeeX, state_parameters: list, state: dict, keep: int,
                        tokenizer: str | None) -> Path:
    """Write a complete checkpoint folder atomically (temporary folder, fsync, rename) and keep the last ``keep``."""
    run = RunFolder(run_dir)
    run.checkpoint_root.mkdir(parents=True, exist_ok=True)
    final = run.step_folder(state["step"])
    tmp = run.temporary(final)
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint.save(model, tmp, tokenizer=tokenizer, network_only=False)
    ms.save_checkpoint([{"name": p.name, "data": p} for p in state_parameters], str(tmp / OPTIMIZER_FILE))
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return _finish_checkpoint(tmp, final, keep)


def save_sharded_run_checkpoint(run_dir: Path, model: CodeGeeX, state_parameters: list, state: dict, keep: int,
                                tokenizer: str | None, rank: int) -> Path | None:
    """Every rank writes its own slices into the temporary folder; rank 0 adds the config, state and strategy
    file and renames the folder once all ranks are done (barriers in between), so a crash leaves only ``.tmp``.
    The strategy file is the one MindSpore wrote for the run (``parallel.strategy_path``; under pipeline stages,
    one rank's file per stage merged into one); without one (data parallel) the config's layout is written.
    Under pipeline stages a rank saves only its stage's parameters."""
    cfg = model.config
    ranks_per_stage = cfg.parallel.data_parallel * cfg.parallel.model_parallel
    strategy = strategy_path(run_dir, rank)
    final = RunFolder(run_dir).step_folder(state["step"])
    tmp = RunFolder.temporary(final)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    all_ranks_agree(True)
    path = reshard.rank_file(tmp, rank)
    params = list(model.get_parameters()) + state_parameters
    held = stage_parameter_names(cfg, strategy)
    params = [p for p in params if held is None or p.name in held]
    try:
        path.parent.mkdir()
        ms.save_checkpoint([{"name": p.name, "data": p} for p in params], str(path))
        problem = None
    except (OSError, RuntimeError) as e:
        problem = f"rank {rank} could not write {path}: {e}"
    if not all_ranks_agree(problem is None):       # no rank renames a folder another rank failed to fill
        raise RuntimeError(problem or f"another rank could not write its part of {tmp}; the previous "
                                      f"checkpoints are intact")
    if rank == 0:
        model.config.save(tmp / checkpoint.CONFIG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        if tokenizer is not None:
            checkpoint.write_tokenizer_reference(tmp, tokenizer)
        if cfg.parallel.pipeline_stages > 1:
            stage_files = [strategy_path(run_dir, s * ranks_per_stage) for s in range(cfg.parallel.pipeline_stages)]
            reshard.merge_pipeline_strategies(stage_files, tmp / "strategy.ckpt")
        elif strategy.is_file():
            shutil.copyfile(strategy, tmp / f"strategy{strategy.suffix}")
        else:
            shapes = {p.name: tuple(p.shape) for p in params}
            (tmp / "strategy.json").write_text(json.dumps(reshard.strategy_layout(model.config, shapes)))
        _finish_checkpoint(tmp, final, keep)
    all_ranks_agree(True)
    return final if rank == 0 else None


def load_run_checkpoint(folder: Path, model: CodeGeeX, state_parameters: list, rank: int | None = None,
                        held: set[str] | None = None) -> dict:
    """Restore weights, optimizer state and loss scale; raises ValueError naming what is wrong.
    ``rank``: load that rank's slices from a sharded checkpoint instead of the single-device files;
    ``held``: the parameters this rank holds (its pipeline stage's; None: all)."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        if rank is None:
            checkpoint.load_weights(model, folder)
            saved = ms.load_checkpoint(str(folder / OPTIMIZER_FILE))
            wanted = {p.name: p for p in state_parameters}
        else:
            saved = ms.load_checkpoint(str(reshard.rank_file(folder, rank)))
            if held is None and model.config.parallel.pipeline_stages > 1:
                held = set(saved)          # no strategy file of this run yet: the stage's file says what it holds
            wanted = {p.name: p for p in list(model.get_parameters()) + state_parameters
                      if held is None or p.name in held}
    except Exception as e:  # noqa: BLE001 - any failure means this checkpoint is unusable
        raise CheckpointError(f"checkpoint {folder} is unreadable: {type(e).__name__}: {str(e)[:300]}") from None
    missing = sorted(set(wanted) - set(saved))
    if missing:
        raise CheckpointError(f"checkpoint {folder} lacks {', '.join(missing[:5])}")
    for name, param in wanted.items():
        if tuple(saved[name].shape) != tuple(param.shape):
            raise CheckpointError(f"checkpoint {folder}: {name} has shape {tuple(saved[name].shape)}, expected "
                                  f"{tuple(param.shape)}")
        param.set_data(Tensor(saved[name].asnumpy(), param.dtype))
    return state


def all_ranks_agree(ok: bool) -> bool:
    """True only if ``ok`` holds on every rank (so all ranks resume from the same checkpoint). Also a barrier.
    A compiled all-reduce sum: on CPU, MindSpore has no Barrier kernel and no eager all-reduce."""
    from mindspore.communication import get_group_size
    total = _sum_over_ranks(Tensor(np.array([1.0 if ok else 0.0], np.float32)))
    return int(round(float(total.asnumpy()[0]))) == get_group_size()


@ms.jit
def _sum_over_ranks(x):
    return ops.AllReduce()(x)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    return RunFolder(run_dir).checkpoints()
