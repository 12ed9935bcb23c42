"""``evaluate`` over a cluster: the samples file cut into N shards, each evaluated by one task of a Slurm job array or
one Ray task (``codegeex_ms.engines``), every node running the same sandbox; then one task joins the shards'
results, in sample order, into the results file. The verdicts are those of a local run: each shard is
``execution.evaluate`` of a block of the same samples.

The job's folder, ``RESULTS.work/`` beside the results file (on storage every node shares), holds ``job.json`` (what
it evaluates: the samples' path and digest, the options, the shard count), each shard's results
``shards/RANK.jsonl`` (each resumable by itself), datatrove's logs and completion markers, and for Slurm the job ids.
Running the same command again redoes only the shards without a completion marker.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from ..engines import Engine, StageError, incomplete_tasks, run_stage, slurm_queue, submit_slurm
from ..fileio import atomic_write_text
from .dataset import DatasetError, language_of_task
from .execution import EvalOptions, evaluate, join_results, read_jsonl, samples_digest


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
    """The last stage (one task): the shards' results joined into the results file (``join_results``' checks)."""

    name = "join"
    type = "WRITER"

    def __init__(self, work: Path, out: Path, shards: int):
        super().__init__()
        self.work, self.out, self.shards = str(work), str(out), shards

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        join_into(Path(self.work), Path(self.out), self.shards)
        return
        yield


def work_dir(out: Path) -> Path:
    return out.with_name(out.name + ".work")


def shard_path(work: Path, rank: int) -> Path:
    return work / "shards" / f"{rank:05d}.jsonl"


def join_into(work: Path, out: Path, shards: int) -> None:
    parts = []
    for rank in range(shards):
        path = shard_path(work, rank)
        meta = path.with_name(path.name + ".meta.json")
        if not meta.is_file():
            raise DatasetError(f"shard {rank} of {shards} has no results ({path}); rerun the same command")
        parts.append((str(path), json.loads(meta.read_text()), read_jsonl(path)))
    meta, rows = join_results(parts)
    atomic_write_text(out.with_name(out.name + ".meta.json"), json.dumps(meta, indent=2) + "\n")
    atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))


def stages(samples: Path, out: Path, data_dir: Path, options: EvalOptions, shards: int) -> dict:
    work = work_dir(out)
    plain = json.loads(json.dumps(asdict(options)))
    return {"evaluate": ([EvaluateShard(samples, data_dir, work, plain)], shards),
            "join": ([JoinShards(work, out, shards)], 1)}


def evaluate_on(engine: Engine, samples: Path, out: Path, data_dir: Path, options: EvalOptions, shards: int) -> dict:
    """Evaluate ``samples`` into ``out`` as ``shards`` tasks on ``engine``. Local and Ray: runs them and returns
    {"samples", "seconds", "passed", "total"}; Slurm: submits them and returns {"submitted": job ids}."""
    samples, out, data_dir = Path(samples).resolve(), Path(out).resolve(), Path(data_dir).resolve()
    rows = read_jsonl(samples)
    if not rows:
        raise DatasetError(f"{samples} holds no samples")
    work = work_dir(out)
    job = {"samples": str(samples), "samples_sha256": samples_digest(rows), "data_dir": str(data_dir),
           "options": json.loads(json.dumps(asdict(options))), "shards": shards}
    job_file = work / "job.json"
    if job_file.is_file():
        old = json.loads(job_file.read_text())
        changed = [key for key in job if old.get(key) != job[key]]
        if changed:
            raise DatasetError(f"{work} belongs to another evaluation ({', '.join(changed)} changed); remove it or "
                               f"choose another results file")
        if out.is_file():                   # joined already: nothing to do
            return dict(summarize(read_jsonl(out)), seconds=0.0, up_to_date=True)
    elif out.exists():
        raise DatasetError(f"{out} exists and no cluster evaluation wrote it; choose a new results file")
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job_file, json.dumps(job, indent=2) + "\n")
    plan = stages(samples, out, data_dir, options, shards)
    cpus = max(1, options.workers)
    if engine.kind == "slurm":
        if (work / "slurm_jobs.json").is_file():
            try:
                queued = slurm_queue(json.loads((work / "slurm_jobs.json").read_text()))
            except StageError as e:
                raise DatasetError(str(e)) from None
            if queued:                      # submitting again would run a queued shard twice
                return {"queued": queued}
        ids = submit_slurm(plan, work / "logs", work / "slurm_logs", engine, "humaneval", cpus_per_task=cpus)
        atomic_write_text(work / "slurm_jobs.json", json.dumps(ids) + "\n")
        return {"submitted": ids}
    start = time.perf_counter()
    for name, (pipeline, tasks) in plan.items():
        try:
            run_stage(name, pipeline, tasks, work / "logs" / name, engine,
                      cpus_per_task=cpus if name == "evaluate" else 1)
        except StageError as e:
            raise DatasetError(str(e)) from None
    return dict(summarize(read_jsonl(out)), seconds=time.perf_counter() - start)


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
        raise DatasetError(f"no cluster evaluation writes {out} (no {work / 'job.json'})")
    shards = json.loads((work / "job.json").read_text())["shards"]
    report = {"shards": shards, "completed": shards - len(incomplete_tasks(work / "logs" / "evaluate", shards)),
              "done": out.is_file()}
    if (work / "slurm_jobs.json").is_file():
        try:
            report["queued"] = slurm_queue(json.loads((work / "slurm_jobs.json").read_text()))
        except StageError as e:
            raise DatasetError(str(e)) from None
    return report


def wait(out: Path, poll_seconds: float = 10.0) -> dict:
    """Wait until the results file is joined and return its summary; raise when its Slurm jobs left the queue
    without it (a shard failed; the join was cancelled)."""
    while True:
        report = status(out)
        if report["done"]:
            return summarize(read_jsonl(out))
        if report.get("queued") == []:
            if status(out)["done"]:
                continue
            raise DatasetError(f"the Slurm jobs of {out} left the queue before it was joined ({report['completed']} "
                               f"of {report['shards']} shards completed); the logs are in {work_dir(Path(out))}/logs "
                               f"and slurm_logs; rerun the same command to submit only the missing shards")
        time.sleep(poll_seconds)
