"""What a training run folder holds (``RunFolder``: every path of a run), and the rule that protects it: a new run
never writes into an earlier one.

A run folder holds ``config.yaml``, ``run.json``, ``metrics.jsonl``, ``loss.png``, ``checkpoints/`` and (under
semi_auto_parallel) ``strategy/``. Starting a new run on top of them would mix two runs: the new metrics replace the
old, checkpoint pruning keeps the old run's later steps, and ``--resume`` then loads weights of the other run. So
``train.py --out`` refuses such a folder unless ``--overwrite`` asks for it to be deleted first. Other files
(msrun's ``--log_dir=RUN/msrun``, which msrun creates before training starts) are left alone.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError

RUN_FILES = ("config.yaml", "run.json", "metrics.jsonl", "loss.png")
RUN_FOLDERS = ("checkpoints", "strategy")


@dataclass(frozen=True)
class RunFolder:
    """Every path of a training run, spelled here only: the config, the run record (data folder, command), the
    metrics and their plot, the step checkpoints (complete ones, and ``.tmp`` ones being written), and the
    per-rank strategy files MindSpore writes under semi_auto_parallel."""
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def record(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def checkpoint_root(self) -> Path:
        return self.path / "checkpoints"

    def recorded_data(self) -> Path | None:
        """The data folder the run was started on (its run record), or None without a record."""
        return Path(json.loads(self.record.read_text())["data"]) if self.record.is_file() else None

    def write_record(self, data: Path, command: list[str]) -> None:
        """The run record: the data folder (resolved) and the command that started or resumed the run."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps({"data": str(Path(data).resolve()), "command": command}, indent=2))

    def step_folder(self, step: int) -> Path:
        return self.checkpoint_root / f"step-{step:08d}"

    @staticmethod
    def temporary(folder: Path) -> Path:
        """Where ``folder`` is written before it is renamed into place (never listed as a checkpoint)."""
        return folder.with_name(folder.name + ".tmp")

    def checkpoints(self) -> list[Path]:
        """The complete step checkpoints, oldest first."""
        if not self.checkpoint_root.is_dir():
            return []
        return sorted(p for p in self.checkpoint_root.glob("step-*") if not p.name.endswith(".tmp"))

    def unfinished_checkpoints(self) -> list[Path]:
        """Step folders a run stopped while writing (``.tmp``)."""
        return sorted(self.checkpoint_root.glob("*.tmp")) if self.checkpoint_root.is_dir() else []

    def strategy_file(self, rank: int) -> Path:
        """Where MindSpore writes this rank's strategy file (the layout of every parameter and optimizer moment)."""
        return self.path / "strategy" / f"rank_{rank}.ckpt"

    def holds_checkpoints(self) -> bool:
        return self.checkpoint_root.is_dir()

    def artefacts(self) -> list[Path]:
        """The files and folders of an earlier run here (empty if there are none)."""
        return [self.path / name for name in RUN_FILES + RUN_FOLDERS if (self.path / name).exists()]

    def check_new(self, overwrite: bool) -> None:
        """Refuse to start a new run here if the folder holds an earlier run, unless ``overwrite``."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {self.path}: is a file, not a folder")
        found = self.artefacts() if self.path.is_dir() else []
        if found and not overwrite:
            latest = self.checkpoints()
            where = f" (latest checkpoint {latest[-1].name})" if latest else ""
            raise ConfigError(f"--out {self.path}: holds an earlier run{where}; continue it with --resume "
                              f"{self.path}, or pass --overwrite to delete it and start again")

    def remove(self) -> None:
        """Delete the earlier run's files and folders (each folder renamed away first, so a crash half-way leaves
        no folder that looks like a usable part of a run)."""
        for path in self.artefacts():
            if path.is_dir():
                doomed = path.with_name(path.name + ".deleting")
                shutil.rmtree(doomed, ignore_errors=True)
                path.rename(doomed)
                shutil.rmtree(doomed)
            else:
                path.unlink()
