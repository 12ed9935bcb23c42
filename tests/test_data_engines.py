"""The corpus pipeline on real clusters started on this machine (tests/clusters.py): a two-node Ray cluster and a
one-node Slurm give the local executor's shards byte for byte, a failed task stops the run with an error naming the
stage, and the same command again redoes only what is missing. Needs root (namespaces), Ray for the Ray test and
Debian's slurm-wlm + munge for the Slurm one (.ci/run installs both)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clusters import in_cluster
from test_data_prep import tree  # noqa: F401  (the fixture tree: every kind of bad input, duplicates, archives)

REPO = Path(__file__).resolve().parents[1]
PREPARE = [sys.executable, str(REPO / "data_prep" / "prepare_corpus.py")]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                       reason="the test clusters run in new namespaces: needs root and unshare"),
]


def common_args(tree, tok_dir) -> list[str]:    # noqa: F811
    return [a for path in tree for a in ("--input", str(path))] + [
        "--tokenizer", str(tok_dir), "--tasks", "4", "--seq-len", "128", "--val-fraction", "0", "--shard-mb", "0.004"]


@pytest.fixture(scope="module")
def local_run(tree, shared_dir, tmp_path_factory):   # noqa: F811
    out = tmp_path_factory.mktemp("local") / "out"
    subprocess.run(PREPARE + common_args(tree, shared_dir / "tokenizer" / "codegeex") + ["--out", str(out)],
                   check=True, capture_output=True)
    return out


def shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.mindrecord"))}


def blocker_for(local_out: Path, out: Path) -> tuple[Path, int]:
    """A folder where one tokenize task writes its token file: that task fails, the others complete."""
    victim = sorted(local_out.glob("train-*.mindrecord"))[-1].name.replace(".mindrecord", ".tokens")
    blocker = out / "work" / "tokens" / victim
    blocker.mkdir(parents=True)
    return blocker, int(victim.split("-")[1])


@pytest.mark.skipif(importlib.util.find_spec("ray") is None or not Path(sys.executable).with_name("ray").exists(),
                    reason="Ray is not installed (pip install -e '.[test]')")
def test_two_ray_nodes_give_the_local_shards_and_resume_a_failed_task(tree, shared_dir, local_run, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    blocker, rank = blocker_for(local_run, out)
    run = " ".join(PREPARE + common_args(tree, shared_dir / "tokenizer" / "codegeex") +
                   ["--out", str(out), "--engine", "ray", "--ray-address", "127.0.0.1:6379"])
    result = in_cluster("ray", tmp_path / "cluster",
                        f"{run}; echo $? > {tmp_path / 'first_rc'}; rmdir {blocker} && {run}")
    log = result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "first_rc").is_file() and (tmp_path / "first_rc").read_text().strip() == "2", log
    assert f"stage tokenize: 3 of 4 tasks completed (missing: {rank})" in result.stderr, log
    assert result.returncode == 0, log
    assert shards(out) == shards(local_run)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"] == "ray"
    # each node has one CPU and two tasks run at once: the per-file stages ran on both
    for stage in ("read_filter_signatures", "tokenize", "export"):
        assert set(manifest["stage_hosts"][stage]) == {"node1", "node2"}, manifest["stage_hosts"]


@pytest.mark.skipif(not all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")),
                    reason="Slurm and munge are not installed (apt-get install slurmctld slurmd slurm-client munge)")
def test_slurm_gives_the_local_shards_and_resubmits_only_a_failed_task(tree, shared_dir, local_run, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    blocker, _ = blocker_for(local_run, out)
    venv = Path(sys.executable).with_name("activate")
    submit = " ".join(PREPARE + common_args(tree, shared_dir / "tokenizer" / "codegeex") + [
        "--out", str(out), "--engine", "slurm", "--partition", "debug", "--time", "00:10:00", "--mem-per-cpu-gb", "1"]
        + (["--venv", str(venv)] if venv.exists() else []))
    wait = " ".join(PREPARE + ["--wait", str(out)])
    result = in_cluster("slurm", tmp_path / "cluster",
                        f"{submit} && {wait}; echo $? > {tmp_path / 'first_rc'}; rmdir {blocker} && "
                        f"{submit} > {tmp_path / 'second_submit'} && {wait}")
    log = result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "first_rc").is_file() and (tmp_path / "first_rc").read_text().strip() == "2", log
    assert "left the queue before the run finished" in result.stderr, log
    assert "tokenize 3/4" in result.stderr and "export 0/4" in result.stderr, log
    assert result.returncode == 0, log
    # the second submission: the failed tokenize task, then export and manifest
    assert len((tmp_path / "second_submit").read_text().split("submitted Slurm jobs ")[1].split(";")[0].split()) == 3
    assert shards(out) == shards(local_run)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"] == "slurm" and manifest["stage_hosts"]["tokenize"] == {"node1": 4}
