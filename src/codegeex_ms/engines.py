"""Where a job's tasks run: this machine (the default, no daemon), a Slurm cluster or a Ray cluster.

A job is a list of stages; a stage is a datatrove pipeline (a list of steps) run as ``tasks`` tasks, rank 0 .. tasks-1,
by datatrove's executors: ``LocalPipelineExecutor`` (processes on this machine), ``SlurmPipelineExecutor`` (one job
array per stage, chained with ``afterok``, submitted with ``sbatch``) and ``RayPipelineExecutor`` (an existing
cluster). A task that completed leaves ``LOGS/STAGE/completions/RANK`` (datatrove's marker) and is skipped when the
same job runs again; a task's outputs must therefore depend on its rank and the job alone, never on the executor.
The corpus preparation (``codegeex_ms.data.pipeline``) and the HumanEval-X evaluation fan-out
(``codegeex_ms.humaneval.fanout``) both run here. Slurm and Ray need the job's folder on storage every node shares.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .cli import UsageError


@dataclass
class Engine:
    """``local``: processes on this machine (``workers`` at once, default all cores). ``slurm``: job arrays
    submitted with ``sbatch`` (``partition`` required); the caller returns once they are submitted and follows them
    with ``slurm_queue``. ``ray``: an existing Ray cluster (``ray_address``, e.g. ``auto`` on a node of it)."""
    kind: str = "local"
    workers: int | None = None
    partition: str | None = None        # slurm
    time: str = "12:00:00"              # slurm: a task's time limit
    venv: str | None = None             # slurm: the virtualenv's bin/activate, sourced by each job
    mem_per_cpu_gb: float = 2.0         # slurm and ray
    ray_address: str | None = None      # ray

    def __post_init__(self):
        if self.kind not in ("local", "slurm", "ray"):
            raise UsageError(f"engine must be local, slurm or ray, got {self.kind!r}")
        if self.kind == "slurm" and not self.partition:
            raise UsageError("the slurm engine needs a partition (--partition)")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"workers must be >= 1, got {self.workers}")


class StageError(ValueError):
    """A stage did not complete all its tasks."""


def incomplete_tasks(logs: Path, tasks: int) -> list[int]:
    """The ranks of a stage (logged under ``logs``) without datatrove's completion marker."""
    done = {p.name for p in (Path(logs) / "completions").glob("*")}
    return [rank for rank in range(tasks) if f"{rank:05d}" not in done]


def run_stage(name: str, pipeline: list, tasks: int, logs: Path, engine: Engine, cpus_per_task: int = 1,
              gpus_per_task: int = 0) -> None:
    """Run a stage's tasks on a local or Ray engine; raise ``StageError`` naming the missing tasks when any failed
    (datatrove's Ray executor returns normally when tasks failed, and a local pool re-raises the first exception)."""
    workers = min(tasks, engine.workers or os.cpu_count() or 1)
    if engine.kind == "local":
        from datatrove.executor import LocalPipelineExecutor
        executor = LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs))
    elif engine.kind == "ray":
        from datatrove.executor.ray import RayPipelineExecutor
        init_ray(engine)
        executor = RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs),
                                       cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
                                       mem_per_cpu_gb=engine.mem_per_cpu_gb)
    else:
        raise ValueError(f"run_stage runs local or ray stages; a {engine.kind} job is submitted (submit_slurm)")
    failure = None
    try:
        executor.run()
    except Exception as e:              # a task's exception, re-raised by the pool: reported with the stage below
        failure = e
    missing = incomplete_tasks(logs, tasks)
    if missing or failure is not None:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise StageError(f"stage {name}: {tasks - len(missing)} of {tasks} tasks completed (missing: {shown}); "
                         f"{type(failure).__name__ + ': ' + str(failure) + '; ' if failure else ''}"
                         f"the logs are in {logs}/logs; rerun the same command to redo only the missing tasks")


def init_ray(engine: Engine) -> None:
    # MindSpore (imported by some stages) with protobuf 7 fails under Ray's protobuf backend ("Descriptors cannot be
    # created directly") unless protobuf's pure-Python backend is chosen before anything imports it
    import ray
    env = {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH")]))}
    if not ray.is_initialized():
        ray.init(address=engine.ray_address, runtime_env={"env_vars": env}, log_to_driver=False)


def submit_slurm(stages: dict[str, tuple[list, int]], logs: Path, slurm_logs: Path, engine: Engine,
                 job_prefix: str, cpus_per_task: dict[str, int] | None = None,
                 gpus_per_task: dict[str, int] | None = None) -> list[str]:
    """One job array per stage (name -> (pipeline, tasks)), each waiting for the one before (afterok); only the
    incomplete tasks are submitted; ``cpus_per_task`` / ``gpus_per_task``: per stage name (default 1 CPU, no GPU).
    Returns the array job ids (a stage whose tasks had all completed has none)."""
    from datatrove.executor.slurm import SlurmPipelineExecutor
    executors = []
    for name, (pipeline, tasks) in stages.items():
        executors.append(SlurmPipelineExecutor(
            pipeline, tasks=tasks, time=engine.time, partition=engine.partition,
            cpus_per_task=(cpus_per_task or {}).get(name, 1), gpus_per_task=(gpus_per_task or {}).get(name, 0),
            workers=engine.workers or -1, job_name=f"{job_prefix}_{name}", qos=None, mail_type=None,
            venv_path=engine.venv, logging_dir=str(Path(logs) / name), slurm_logs_folder=str(Path(slurm_logs) / name),
            depends=executors[-1] if executors else None,
            # Slurm takes whole units (datatrove would write "2.0G"); a stage whose predecessor failed is cancelled
            # instead of pending forever on a dependency that can never be met
            sbatch_args={"mem-per-cpu": f"{max(1, round(engine.mem_per_cpu_gb * 1024))}M",
                         "kill-on-invalid-dep": "yes"}))
    executors[-1].run()                 # submits its dependencies first, each with --dependency=afterok
    return [str(e.job_id) for e in executors if e.job_id not in (None, -1)]


def slurm_queue(job_ids: list[str]) -> list[str]:
    """``squeue`` lines (job id, state, reason) of these jobs; [] when none is left (Slurm forgets ended jobs)."""
    if not job_ids:
        return []
    try:
        result = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T %r"], capture_output=True,
                                text=True, timeout=60)
    except FileNotFoundError:
        raise StageError("this job was submitted to Slurm, but squeue is not on this machine's PATH") from None
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return []
        raise StageError(f"squeue -j {','.join(job_ids)} failed: {result.stderr.strip()}")
    return [line for line in result.stdout.splitlines() if line.strip()]
