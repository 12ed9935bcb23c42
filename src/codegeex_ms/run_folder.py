"""What a training run folder holds, and the rule that protects it: a new run never writes into an earlier one.

A run folder holds ``config.yaml``, ``run.json``, ``metrics.jsonl``, ``loss.png``, ``checkpoints/`` and (under
semi_auto_parallel) ``strategy/``. Starting a new run on top of them would mix two runs: the new metrics replace the
old, checkpoint pruning keeps the old run's later steps, and ``--resume`` then loads weights of the other run. So
``train.py --out`` refuses such a folder unless ``--overwrite`` asks for it to be deleted first. Other files
(msrun's ``--log_dir=RUN/msrun``, which msrun creates before training starts) are left alone.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .config import ConfigError

RUN_FILES = ("config.yaml", "run.json", "metrics.jsonl", "loss.png")
RUN_FOLDERS = ("checkpoints", "strategy")


def run_artefacts(run_dir: Path) -> list[Path]:
    """The files and folders of an earlier run in ``run_dir`` (empty if there are none)."""
    return [run_dir / name for name in RUN_FILES + RUN_FOLDERS if (run_dir / name).exists()]


def check_new_run_folder(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start a new run in ``run_dir`` if it holds an earlier run, unless ``overwrite``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir}: is a file, not a folder")
    found = run_artefacts(run_dir) if run_dir.is_dir() else []
    if found and not overwrite:
        from .run_checkpoint import complete_checkpoints
        latest = complete_checkpoints(run_dir)
        where = f" (latest checkpoint {latest[-1].name})" if latest else ""
        raise ConfigError(f"--out {run_dir}: holds an earlier run{where}; continue it with --resume {run_dir}, "
                          f"or pass --overwrite to delete it and start again")


def remove_run_folder(run_dir: Path) -> None:
    """Delete the earlier run's files and folders in ``run_dir`` (each folder renamed away first, so a crash
    half-way leaves no folder that looks like a usable part of a run)."""
    for path in run_artefacts(run_dir):
        if path.is_dir():
            doomed = path.with_name(path.name + ".deleting")
            shutil.rmtree(doomed, ignore_errors=True)
            path.rename(doomed)
            shutil.rmtree(doomed)
        else:
            path.unlink()
