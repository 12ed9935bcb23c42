"""generate and evaluate over real clusters started on this machine (tests/clusters.py): on a two-node Ray cluster
and a one-node Slurm, evaluate gives the local run's verdicts for every sample (a failed shard stops the job with an
error naming it, and the same command again redoes only that shard) and generate in 3 shards gives the local
run's samples file byte for byte. Needs root (namespaces), Ray / Debian's slurm-wlm + munge (.ci/run
installs both)."""
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

REPO = Path(__file__).resolve().parents[1]
EVAL = [sys.executable, str(REPO / "eval_humaneval_x.py")]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                       reason="the test clusters run in new namespaces: needs root and unshare"),
]


@pytest.fixture(scope="module")
def samples_and_verdicts(shared_dir, tmp_path_factory):
    """Python samples: 10 canonical solutions, 3 of them broken (a wrong return, a syntax error, an exception), and
    their verdicts from a local run."""
    from codegeex_ms.humaneval.execution import canonical_samples
    folder = tmp_path_factory.mktemp("samples")
    rows = canonical_samples(shared_dir / "datasets" / "humaneval-x", ["python"])[:10]
    rows[2]["generation"] = "    return None\n"
    rows[5]["generation"] = "    return (\n"
    rows[7]["generation"] = "    raise RuntimeError('no')\n"
    samples = folder / "samples.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
    subprocess.run(EVAL + ["evaluate", "--data-dir", str(shared_dir / "datasets" / "humaneval-x"), "--samples",
                           str(samples), "--out", str(folder / "local.jsonl")], check=True, capture_output=True)
    verdicts = verdicts_of(folder / "local.jsonl")
    assert sum(v == "passed" for v in verdicts.values()) == 7
    return samples, verdicts


def verdicts_of(results: Path) -> dict[int, str]:
    return {row["sample_index"]: row["result"] for row in map(json.loads, results.read_text().splitlines())}


def command(shared_dir, samples: Path, out: Path, *engine: str) -> str:
    return " ".join(EVAL + ["evaluate", "--data-dir", str(shared_dir / "datasets" / "humaneval-x"), "--samples",
                            str(samples), "--out", str(out), "--tasks", "4", "--workers", "1", *engine])


@pytest.fixture(scope="module")
def generated(tiny_checkpoint, shared_dir, tmp_path_factory):
    """A local generate run on the tiny checkpoint (2 Python problems x 3 samples): its command and its file."""
    folder = tmp_path_factory.mktemp("generated")
    command = EVAL + ["generate", "--checkpoint", str(tiny_checkpoint), "--data-dir",
                      str(shared_dir / "datasets" / "humaneval-x"), "--languages", "python", "--limit", "2", "--n",
                      "3", "--batch-size", "2", "--max-new-tokens", "12"]
    subprocess.run(command + ["--out", str(folder / "local.jsonl")], check=True, capture_output=True)
    return command, (folder / "local.jsonl").read_bytes()


def blocked_shard(out: Path, rank: int) -> Path:
    """A folder where shard RANK writes its results: that shard fails, the others complete."""
    blocker = out.with_name(out.name + ".work") / "shards" / f"{rank:05d}.jsonl"
    blocker.mkdir(parents=True)
    return blocker


@pytest.mark.skipif(importlib.util.find_spec("ray") is None or not Path(sys.executable).with_name("ray").exists(),
                    reason="Ray is not installed (pip install -e '.[test]')")
def test_two_ray_nodes_give_the_local_verdicts_and_samples(shared_dir, samples_and_verdicts, generated, tmp_path):
    samples, verdicts = samples_and_verdicts
    out = tmp_path / "results.jsonl"
    blocker = blocked_shard(out, 1)
    run = command(shared_dir, samples, out, "--engine", "ray", "--ray-address", "127.0.0.1:6379")
    generate = " ".join(generated[0] + ["--engine", "ray", "--ray-address", "127.0.0.1:6379", "--tasks", "3",
                                        "--out", str(tmp_path / "samples.jsonl")])
    result = in_cluster("ray", tmp_path / "cluster",
                        f"{run}; echo $? > {tmp_path / 'first_rc'}; rmdir {blocker} && {run} && {generate}")
    log = result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "first_rc").read_text().strip() == "2", log
    assert "stage evaluate: 3 of 4 tasks completed (missing: 1)" in result.stderr, log
    assert result.returncode == 0, log
    assert verdicts_of(out) == verdicts
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["joined_shards"] == 4 and set(meta["shard_hosts"]) == {"node1", "node2"}, meta
    assert (tmp_path / "samples.jsonl").read_bytes() == generated[1]


@pytest.mark.skipif(not all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")),
                    reason="Slurm and munge are not installed (apt-get install slurmctld slurmd slurm-client munge)")
def test_slurm_gives_the_local_verdicts_and_samples(shared_dir, samples_and_verdicts, generated, tmp_path):
    samples, verdicts = samples_and_verdicts
    out = tmp_path / "results.jsonl"
    blocker = blocked_shard(out, 2)
    venv = Path(sys.executable).with_name("activate")
    submit = command(shared_dir, samples, out, "--engine", "slurm", "--partition", "debug", "--time", "00:10:00",
                     "--mem-per-cpu-gb", "1", "--wait", *(["--venv", str(venv)] if venv.exists() else []))
    generate = " ".join(generated[0] + ["--engine", "slurm", "--partition", "debug", "--time", "00:10:00",
                                        "--mem-per-cpu-gb", "1", "--tasks", "3", "--wait",
                                        "--out", str(tmp_path / "samples.jsonl")]
                        + (["--venv", str(venv)] if venv.exists() else []))
    result = in_cluster("slurm", tmp_path / "cluster",
                        f"{submit}; echo $? > {tmp_path / 'first_rc'}; rmdir {blocker} && "
                        f"{submit} > {tmp_path / 'second'} && {generate}")
    log = result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "first_rc").read_text().strip() == "2", log
    assert "left the queue before it was joined (3 of 4 shards completed)" in result.stderr, log
    assert result.returncode == 0, log
    # the second submission: the failed shard's array (one task) and the join
    second = (tmp_path / "second").read_text()
    assert len(second.split("submitted Slurm jobs ")[1].split(" (")[0].split()) == 2, second
    assert verdicts_of(out) == verdicts
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["shard_hosts"] == ["node1"] * 4
    assert (tmp_path / "samples.jsonl").read_bytes() == generated[1]
