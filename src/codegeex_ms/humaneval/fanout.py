"""``generate`` and ``evaluate`` over a cluster: the work cut into N shards, each done by one task of a Slurm job
array or one Ray task (``codegeex_ms.engines``), then one task joining the shards into the output file.

- ``evaluate_on``: shard RANK evaluates block RANK of the samples (``execution.evaluate``, the same sandbox on every
  node); the join writes the results in sample order. The verdicts are those of a local run.
- ``generate_on``: shard RANK runs ``eval_humaneval_x.py generate ... --shard RANK/N`` (a command given by the caller;
  one device each: a Slurm task or Ray task with ``gpus_per_task`` GPUs sees only its own); the join is ``merge``'s
  (``sampling.merge_samples``), so the file equals one unsharded run's byte for byte.

The job's folder, ``OUT.work/`` beside the output file (on storage every node shares), holds ``job.json`` (what the
job is; another job in the same folder is refused), each shard's file ``shards/RANK.jsonl`` (each resumable by
itself), datatrove's logs and completion markers, and for Slurm the job ids. Running the same command again redoes
only the shards without a completion marker, and does not resubmit while the job's Slurm jobs are queued.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from ..engines import Engine, StageError, incomplete_tasks, run_stage, slurm_queue, submit_slurm
from ..fileio import atomic_write_text
from .dataset import DatasetError, language_of_task
from .execution import EvalOptions, evaluate, join_result_files, read_jsonl, samples_digest
from .sampling import merge_sample_files


class EvaluateShard(PipelineStep):
    """Task RANK of N: ``evaluate`` of block RANK of the samples into ``shards/RANK.jsonl``."""

    name = "evaluate"
    type = "EXECUTION"

    def __init__(self, samples: Path, data_dir: Path, work: Path, options: dict):
        super().__init__()
        self.samples, self.data_dir, self.work, self.options = str(samples), str(data_dir), str(work), options

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        options = EvalOptions(**dict(self.options, languages=tuple(self.options["languages"])))
        shard_path(Path(self.work), rank).parent.mkdir(parents=True, exist_ok=True)
        summary = evaluate(read_jsonl(self.samples), shard_path(Path(self.work), rank), self.data_dir, options,
                           progress=False, shard=(rank, world_size))
        self.stat_update("programs_run", value=summary["programs_run"])
        self.stat_update("samples", value=summary["samples"])
        return
        yield


class JoinShards(PipelineStep):
    """The last stage (one task): ``join`` (``execution.join_result_files`` or ``sampling.merge_sample_files``:
    the checks of ``merge``) of the shards' files into the output file."""

    name = "join"
    type = "WRITER"

    def __init__(self, join, work: Path, out: Path, shards: int):
        super().__init__()
        self.join, self.work, self.out, self.shards = join, str(work), str(out), shards

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self.join([shard_path(Path(self.work), index) for index in range(self.shards)], Path(self.out))
        return
        yield


def work_dir(out: Path) -> Path:
    return out.with_name(out.name + ".work")


def shard_path(work: Path, rank: int) -> Path:
    return work / "shards" / f"{rank:05d}.jsonl"


def stages(samples: Path, out: Path, data_dir: Path, options: EvalOptions, shards: int) -> dict:
    work = work_dir(out)
    plain = json.loads(json.dumps(asdict(options)))
    return {"evaluate": ([EvaluateShard(samples, data_dir, work, plain)], shards),
            "join": ([JoinShards(join_result_files, work, out, shards)], 1)}


def evaluate_on(engine: Engine, samples: Path, out: Path, data_dir: Path, options: EvalOptions, shards: int) -> dict:
    """Evaluate ``samples`` into ``out`` as ``shards`` tasks on ``engine``. Local and Ray: runs them and returns
    {"samples", "seconds", "passed", "total"}; Slurm: submits them and returns {"submitted": job ids}, or
    {"queued": squeue lines} when the job's Slurm jobs are still queued (nothing is submitted twice)."""
    samples, out, data_dir = Path(samples).resolve(), Path(out).resolve(), Path(data_dir).resolve()
    rows = read_jsonl(samples)
    if not rows:
        raise DatasetError(f"{samples} holds no samples")
    job = {"kind": "evaluate", "samples": str(samples), "samples_sha256": samples_digest(rows),
           "data_dir": str(data_dir), "options": json.loads(json.dumps(asdict(options))), "shards": shards}
    return run_job(engine, out, job, stages(samples, out, data_dir, options, shards),
                   {"evaluate": max(1, options.workers)}, {}, lambda: summarize(read_jsonl(out)))


def generate_on(engine: Engine, command: list[str], out: Path, shards: int, gpus_per_task: int = 0,
                cpus_per_task: int = 1) -> dict:
    """Run ``command`` (a generate command line without --shard and --out) as ``shards`` tasks on ``engine``, each
    with ``--shard RANK/N --out OUT.work/shards/RANK.jsonl``, then merge them into ``out``. Returns like
    ``evaluate_on`` ({"samples", "seconds"}, {"submitted": ids} or {"queued": lines})."""
    out = Path(out).resolve()
    job = {"kind": "generate", "command": list(command), "shards": shards}
    work = work_dir(out)
    plan = {"generate": ([CommandShard(command, work)], shards),
            "join": ([JoinShards(merge_sample_files, work, out, shards)], 1)}
    return run_job(engine, out, job, plan, {"generate": cpus_per_task}, {"generate": gpus_per_task},
                   lambda: {"samples": len(read_jsonl(out))})


def run_job(engine: Engine, out: Path, job: dict, plan: dict, cpus: dict[str, int], gpus: dict[str, int],
            summary_of) -> dict:
    """Check ``job`` against the one recorded in ``OUT.work/job.json``, then run (local, ray) or submit (slurm) the
    stages of ``plan`` (name -> (pipeline, tasks)) with the given CPUs and GPUs per task of each stage."""
    work = work_dir(out)
    job_file = work / "job.json"
    if job_file.is_file():
        old = json.loads(job_file.read_text())
        changed = [key for key in job if old.get(key) != job[key]]
        if changed:
            raise DatasetError(f"{work} belongs to another job ({', '.join(changed)} changed); remove it or choose "
                               f"another output file")
        if out.is_file():                   # joined already: nothing to do
            return dict(summary_of(), seconds=0.0, up_to_date=True)
    elif out.exists():
        raise DatasetError(f"{out} exists and no cluster job wrote it; choose a new output file")
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job_file, json.dumps(job, indent=2) + "\n")
    if engine.kind == "slurm":
        queued = queued_jobs(work)
        if queued:                          # submitting again would run a queued shard twice
            return {"queued": queued}
        ids = submit_slurm(plan, work / "logs", work / "slurm_logs", engine, f"humaneval_{job['kind']}",
                           cpus_per_task=cpus, gpus_per_task=gpus)
        atomic_write_text(work / "slurm_jobs.json", json.dumps(ids) + "\n")
        return {"submitted": ids}
    start = time.perf_counter()
    for name, (pipeline, tasks) in plan.items():
        try:
            run_stage(name, pipeline, tasks, work / "logs" / name, engine, cpus_per_task=cpus.get(name, 1),
                      gpus_per_task=gpus.get(name, 0))
        except StageError as e:
            raise DatasetError(str(e)) from None
    return dict(summary_of(), seconds=time.perf_counter() - start)


class CommandShard(PipelineStep):
    """Task RANK of N: ``command --shard RANK/N --out shards/RANK.jsonl`` in a child process."""

    name = "generate"
    type = "GENERATOR"

    def __init__(self, command: list[str], work: Path):
        super().__init__()
        self.command, self.work = list(command), str(work)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        out = shard_path(Path(self.work), rank)
        out.parent.mkdir(parents=True, exist_ok=True)
        status = subprocess.run(self.command + ["--shard", f"{rank}/{world_size}", "--out", str(out)]).returncode
        if status != 0:
            raise RuntimeError(f"shard {rank}/{world_size}: {' '.join(self.command[:3])} ... exited with status "
                               f"{status}")
        self.stat_update("samples", value=len(read_jsonl(out)))
        return
        yield


def queued_jobs(work: Path) -> list[str] | None:
    """``squeue`` lines of the job's Slurm jobs still queued ([] when none is); None when it was never submitted."""
    if not (work / "slurm_jobs.json").is_file():
        return None
    try:
        return slurm_queue(json.loads((work / "slurm_jobs.json").read_text()))
    except StageError as e:
        raise DatasetError(str(e)) from None


def summarize(rows: list[dict]) -> dict:
    passed: dict[str, int] = {}
    total: dict[str, int] = {}
    for row in rows:
        lang = language_of_task(row["task_id"])
        total[lang] = total.get(lang, 0) + 1
        passed[lang] = passed.get(lang, 0) + bool(row["passed"])
    return {"samples": len(rows), "passed": passed, "total": total}


def status(out: Path) -> dict:
    """Shards completed of shards, whether the results file is joined, and for Slurm the jobs still queued."""
    out = Path(out).resolve()
    work = work_dir(out)
    if not (work / "job.json").is_file():
        raise DatasetError(f"no cluster job writes {out} (no {work / 'job.json'})")
    job = json.loads((work / "job.json").read_text())
    shards, stage = job["shards"], job.get("kind", "evaluate")
    report = {"shards": shards, "completed": shards - len(incomplete_tasks(work / "logs" / stage, shards)),
              "done": out.is_file()}
    if (work / "slurm_jobs.json").is_file():
        report["queued"] = queued_jobs(work)
    return report


def wait(out: Path, poll_seconds: float = 10.0) -> dict:
    """Wait until the output file is joined and return its summary; raise when its Slurm jobs left the queue
    without it (a shard failed; the join was cancelled)."""
    while True:
        report = status(out)
        if report["done"]:
            rows = read_jsonl(out)
            return summarize(rows) if rows and "passed" in rows[0] else {"samples": len(rows)}
        if report.get("queued") == []:
            if status(out)["done"]:
                continue
            raise DatasetError(f"the Slurm jobs of {out} left the queue before it was joined ({report['completed']} "
                               f"of {report['shards']} shards completed); the logs are in {work_dir(Path(out))}/logs "
                               f"and slurm_logs; rerun the same command to submit only the missing shards")
        time.sleep(poll_seconds)
