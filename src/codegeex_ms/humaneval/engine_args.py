"""The command line's side of ``generate``/``evaluate --engine slurm|ray`` (``eval_humaneval_x.py``): the flags, the
engine they describe, and what a Slurm submission printed. Kept apart from ``fanout`` so that parsing the command
line does not import datatrove."""
from __future__ import annotations

from ..cli import UsageError, non_negative_int, positive_float, positive_int
from ..engines import Engine


def add_engine_arguments(p, command: str) -> None:
    if command == "evaluate":
        engine_help = ("local: this machine, --workers programs at once (default); slurm: a job array of --tasks "
                       "shards and a join job, submitted with sbatch; ray: --tasks Ray tasks on an existing cluster, "
                       "then the join. Each shard runs --workers programs at once on its node")
    else:
        engine_help = ("local: this process (default); slurm: a job array of --tasks shards (generate --shard "
                       "RANK/N, one device each with --gpus-per-task) and a join job (merge), submitted with sbatch; "
                       "ray: --tasks Ray tasks on an existing cluster, then the join. The merged file equals one "
                       "local run's")
    run = p.add_argument_group("on a cluster (--out's folder must be on storage every node shares)")
    run.add_argument("--engine", choices=("local", "slurm", "ray"), default="local",
                     help=engine_help + "; rerun the same command to redo only unfinished shards (OUT.work/ holds "
                                        "them)")
    run.add_argument("--tasks", type=positive_int, help="slurm and ray: shards (tasks) to cut the work into")
    run.add_argument("--wait", action="store_true",
                     help="slurm: after submitting (or finding the jobs still queued), wait until the output is "
                          "joined and print the summary; exit 2 if the jobs left the queue without it")
    if command == "generate":
        run.add_argument("--gpus-per-task", type=non_negative_int, default=0,
                         help="slurm and ray: GPUs each shard asks for (default 0: CPU); the task sees only its own, "
                              "as device 0")
    run.add_argument("--partition", help="slurm: the partition")
    run.add_argument("--time", default="12:00:00", help="slurm: each shard's time limit (default 12:00:00)")
    run.add_argument("--venv", help="slurm: the virtualenv's bin/activate, sourced by each job")
    run.add_argument("--mem-per-cpu-gb", type=positive_float, default=2.0,
                     help="slurm and ray: memory per CPU (default 2)")
    run.add_argument("--ray-address", default="auto", help="ray: the cluster's address (default auto: this node's)")


def cluster_engine(args):
    if not args.tasks:
        raise UsageError(f"--engine {args.engine} needs --tasks N: the shards to cut the work into")
    if args.shard != (0, 1):
        raise UsageError(f"--shard is for one local shard or msrun; --engine {args.engine} makes --tasks shards "
                         f"itself")
    try:
        return Engine(args.engine, partition=args.partition, time=args.time, venv=args.venv,
                      mem_per_cpu_gb=args.mem_per_cpu_gb, ray_address=args.ray_address)
    except ValueError as e:
        raise UsageError(str(e)) from None


def print_cluster_summary(args, summary: dict) -> dict | None:
    """Print what a Slurm submission did; returns the summary to print, or None when there is nothing more."""
    if "submitted" not in summary and "queued" not in summary:
        return summary
    from .fanout import wait, work_dir          # (the caller has imported it already)
    if "submitted" in summary:
        print(f"submitted Slurm jobs {' '.join(summary['submitted'])} ({args.tasks} shards, then the join)")
    else:
        print("this job's Slurm jobs are still queued (nothing submitted):\n  " + "\n  ".join(summary["queued"]))
    if not args.wait:
        print(f"follow them with the same command and --wait; the shards are in {work_dir(args.out)}")
        return None
    return dict(wait(args.out), seconds=None)
