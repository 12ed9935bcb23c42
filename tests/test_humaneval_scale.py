"""HumanEval-X at scale, on this machine: evaluation in shards joined exactly (merge, and the datatrove fan-out on
the local executor: the Ray and Slurm runs are in test_humaneval_engines.py), per-language run timeouts from the
canonical solutions' run times, and the report's standard errors, timeout rates and published figures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codegeex_ms.engines import Engine
from codegeex_ms.humaneval.dataset import DatasetError, load_problems
from codegeex_ms.humaneval.execution import (EvalOptions, JoinError, evaluate, join_results, read_jsonl,
                                             timeouts_from_canonical)
from codegeex_ms.humaneval.fanout import evaluate_on
from codegeex_ms.humaneval.report import summarize, write_report

REPO = Path(__file__).resolve().parent.parent
PYTHON = EvalOptions(languages=("python",), workers=2)


@pytest.fixture(scope="module")
def data_dir(shared_dir):
    return shared_dir / "datasets" / "humaneval-x"


@pytest.fixture(scope="module")
def samples(data_dir):
    """Two samples of each of the first 5 Python problems: the canonical solution and a wrong body."""
    problems = load_problems(data_dir, "python")
    return [{"task_id": t, "prompt": problems[t]["prompt"],
             "generation": problems[t]["canonical_solution"] if i % 2 == 0 else "    return None\n"}
            for t in list(problems)[:5] for i in range(2)]


def verdicts(rows: list[dict]) -> dict[int, str]:
    return {row["sample_index"]: row["result"] for row in rows}


@pytest.fixture(scope="module")
def local_results(samples, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "results.jsonl"
    evaluate(samples, out, data_dir, PYTHON, progress=False)
    return read_jsonl(out)


def shard_parts(samples, data_dir, folder: Path, count: int) -> list[tuple[str, dict, list[dict]]]:
    parts = []
    for index in range(count):
        out = folder / f"r{index}.jsonl"
        evaluate(samples, out, data_dir, PYTHON, progress=False, shard=(index, count))
        parts.append((str(out), json.loads(out.with_name(out.name + ".meta.json").read_text()), read_jsonl(out)))
    return parts


def test_three_result_shards_join_into_the_local_verdicts(samples, data_dir, local_results, tmp_path):
    parts = shard_parts(samples, data_dir, tmp_path, 3)
    assert [len(rows) for _, _, rows in parts] == [3, 3, 4]       # blocks [0,3) [3,6) [6,10)
    meta, rows = join_results(parts)
    assert [row["sample_index"] for row in rows] == list(range(10))
    assert verdicts(rows) == verdicts(local_results)
    assert meta["joined_shards"] == 3 and meta["samples"] == 10
    # the CLI's merge does the same with files
    r = subprocess.run([sys.executable, str(REPO / "eval_humaneval_x.py"), "merge", "--out", str(tmp_path / "m.jsonl"),
                        *(name for name, _, _ in parts)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert verdicts(read_jsonl(tmp_path / "m.jsonl")) == verdicts(local_results)
    # refused: a missing shard, a repeated sample, shards of other samples, other options
    with pytest.raises(JoinError, match=r"expected shards 0/3 .. 2/3 once each, got 0/3, 2/3"):
        join_results([parts[0], parts[2]])
    name, meta1, rows1 = parts[1]
    first = rows1[0]["sample_index"]                    # rows are in completion order
    with pytest.raises(JoinError, match=f"sample {first} appears twice"):
        join_results([parts[0], (name, meta1, rows1 + rows1[:1]), parts[2]])
    with pytest.raises(JoinError, match=rf"1 of 10 samples have no result \(first: \[{first}\]\)"):
        join_results([parts[0], (name, meta1, rows1[1:]), parts[2]])
    for key, value in (("samples_sha256", "0" * 64), ("run_timeout", 99.0)):
        with pytest.raises(JoinError, match=f"differ in {key}"):
            join_results([parts[0], (name, dict(meta1, **{key: value}), rows1), parts[2]])
    # a results file continues only with its own samples and shard (unsharded: samples that grew)
    with pytest.raises(DatasetError, match="other samples or another shard"):
        evaluate(samples, tmp_path / "r0.jsonl", data_dir, PYTHON, progress=False, shard=(1, 3))
    with pytest.raises(DatasetError, match="other samples or another shard"):
        evaluate(samples + samples[:1], tmp_path / "r0.jsonl", data_dir, PYTHON, progress=False, shard=(0, 3))
    evaluate(samples[:4], tmp_path / "whole.jsonl", data_dir, PYTHON, progress=False)
    assert evaluate(samples, tmp_path / "whole.jsonl", data_dir, PYTHON, progress=False)["already_done"] == 4
    with pytest.raises(DatasetError, match="other samples or another shard"):
        evaluate(samples[1:], tmp_path / "whole.jsonl", data_dir, PYTHON, progress=False)


def test_the_fan_out_on_the_local_executor_gives_the_local_verdicts(samples, data_dir, local_results, tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in samples))
    out = tmp_path / "results.jsonl"
    options = EvalOptions(languages=("python",), workers=1)
    summary = evaluate_on(Engine("local", workers=2), path, out, data_dir, options, shards=4)
    assert summary["samples"] == 10 and summary["passed"] == {"python": 5}
    assert verdicts(read_jsonl(out)) == verdicts(local_results)
    assert evaluate_on(Engine("local", workers=2), path, out, data_dir, options, shards=4)["up_to_date"]
    with pytest.raises(DatasetError, match=r"belongs to another job \(shards changed\)"):
        evaluate_on(Engine("local"), path, out, data_dir, options, shards=3)


def test_generate_in_shards_on_the_local_executor_equals_one_run(tiny_checkpoint, data_dir, tmp_path):
    from codegeex_ms.humaneval.fanout import generate_on
    command = [sys.executable, str(REPO / "eval_humaneval_x.py"), "generate", "--checkpoint", str(tiny_checkpoint),
               "--data-dir", str(data_dir), "--languages", "python,js", "--limit", "2", "--n", "2", "--batch-size",
               "3", "--max-new-tokens", "10"]
    subprocess.run(command + ["--out", str(tmp_path / "one.jsonl")], check=True, capture_output=True, timeout=600)
    summary = generate_on(Engine("local", workers=2), command, tmp_path / "sharded.jsonl", shards=3)
    assert summary["samples"] == 8
    assert (tmp_path / "sharded.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    settings = json.loads((tmp_path / "sharded.jsonl.settings.json").read_text())
    assert settings["shard"]["count"] == 1 and settings["temperature"] == 0.8


@pytest.mark.slow
def test_generate_under_msrun_one_shard_per_rank_merges_into_one_run(tiny_checkpoint, data_dir, tmp_path):
    """msrun --worker_num=2 on CPU: rank R takes shard R/2 into OUT.work/shards/R.jsonl; merged, one local run."""
    import os
    import shutil
    import socket
    command = [str(REPO / "eval_humaneval_x.py"), "generate", "--checkpoint", str(tiny_checkpoint), "--data-dir",
               str(data_dir), "--languages", "python", "--limit", "2", "--n", "3", "--batch-size", "2",
               "--max-new-tokens", "10"]
    subprocess.run([sys.executable, *command, "--out", str(tmp_path / "one.jsonl")], check=True,
                   capture_output=True, timeout=600)
    msrun = shutil.which("msrun") or str(Path(sys.executable).parent / "msrun")
    with socket.socket() as sock:                       # a free port, so concurrent runs do not collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "samples.jsonl"
    result = subprocess.run([msrun, "--worker_num=2", "--local_worker_num=2", f"--master_port={port}", "--join=True",
                             f"--log_dir={tmp_path / 'logs'}", *command, "--shard", "msrun", "--out", str(out)],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("*.log")))
    assert result.returncode == 0, logs[-3000:]
    shards = sorted((tmp_path / "samples.jsonl.work" / "shards").glob("*.jsonl"))
    assert [p.name for p in shards] == ["00000.jsonl", "00001.jsonl"]
    merged = subprocess.run([sys.executable, str(REPO / "eval_humaneval_x.py"), "merge", "--out", str(out),
                             *map(str, shards)], capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr
    assert out.read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    # outside msrun the option names what it needs
    alone = subprocess.run([sys.executable, *command, "--shard", "msrun", "--out", str(tmp_path / "x.jsonl")],
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 2 and "start this command with msrun" in alone.stderr


def test_per_language_run_timeouts_come_from_the_canonical_run_times(data_dir, tmp_path):
    rows = [{"task_id": "Python/0", "result": "passed", "run_seconds": 0.2},
            {"task_id": "Python/1", "result": "passed", "run_seconds": 0.5},
            {"task_id": "Python/2", "result": "timed out", "run_seconds": 15.0},      # left out
            {"task_id": "Java/0", "result": "passed", "run_seconds": 1.5},
            {"task_id": "Rust/10", "result": "failed: compilation error: x", "run_seconds": None},   # left out
            {"task_id": "Rust/0", "result": "passed", "run_seconds": 0.1}]
    assert timeouts_from_canonical(rows, base=1.0, factor=4) == {"python": 2.0, "java": 6.0, "rust": 1.0}
    assert timeouts_from_canonical(rows, base=3.0, factor=4) == {"python": 3.0, "java": 6.0, "rust": 3.0}
    with pytest.raises(DatasetError, match="no canonical run times of rust"):
        timeouts_from_canonical(rows[:4] + [{"task_id": "Rust/0", "result": "passed"}], 1.0, 4)
    # a Python sample that sleeps 0.5 s per call (its test calls it 7 times): passes under the default 15 s,
    # times out under a 1 s Python timeout
    problem = next(iter(load_problems(data_dir, "python").values()))
    slow = [{"task_id": problem["task_id"], "generation": "    import time; time.sleep(0.5)\n"
                                                           + problem["canonical_solution"]}]
    plain = evaluate(slow, tmp_path / "plain.jsonl", data_dir, PYTHON, progress=False)
    assert plain["passed"] == {"python": 1}
    tight = EvalOptions(languages=("python",), run_timeouts={"python": 1.0})
    summary = evaluate(slow, tmp_path / "tight.jsonl", data_dir, tight, progress=False)
    assert summary["passed"] == {"python": 0} and summary["run_timeouts"] == {"python": 1.0}
    row = read_jsonl(tmp_path / "tight.jsonl")[0]
    assert row["result"] == "timed out" and row["run_seconds"] < 3
    assert read_jsonl(tmp_path / "plain.jsonl")[0]["run_seconds"] >= 3


def test_report_has_standard_errors_timeout_rates_and_the_published_figures(tmp_path):
    # 4 problems x 2 samples: per-problem pass@1 0, 0.5, 1, 1 -> mean 0.625, se = std(ddof=1) / 2
    outcomes = [("failed: x", "timed out"), ("passed", "failed: x"), ("passed", "passed"), ("passed", "passed")]
    rows = [{"task_id": f"Python/{i}", "passed": r == "passed", "result": r} for i, pair in enumerate(outcomes)
            for r in pair]
    rows += [{"task_id": "CPP/0", "passed": True, "result": "passed", "task": "translation", "src_lang": "java"}]
    summary = summarize(rows)
    python = summary["generation"]["python"]
    assert python["pass@1"] == pytest.approx(0.625)
    per_problem = [0, 0.5, 1, 1]
    mean = sum(per_problem) / 4
    se = (sum((p - mean) ** 2 for p in per_problem) / 3) ** 0.5 / 2
    assert python["pass@1_se"] == pytest.approx(se)
    assert python["timeout_rate"] == pytest.approx(1 / 8)
    assert python["published"] == pytest.approx({"pass@1": 0.229, "pass@10": 0.396, "pass@100": 0.609})
    assert summary["translation"]["java->cpp"]["published"] == pytest.approx(
        {"pass@1": 0.3933, "pass@10": 0.5848, "pass@100": 0.7236})
    paths = write_report(summary, tmp_path / "hx", {"run_timeouts": {"python": 2.0}})
    md = paths[0].read_text()
    assert f"| python | 4 | 2 | 62.50 ± {100 * se:.2f} | 22.90 | 12.50 |" in md
    assert "| java->cpp | 1 | 1 | 100.00 | 39.33 | 0.00 |" in md
    assert "| CodeGen-16B-multi | 19.2 | 18.1 | 15.0 | 18.4 | 13.0 | 1.8 | 14.2 |" in md
    assert "run timeouts (s): python 2" in md
    report = json.loads(paths[2].read_text())
    assert report["published"]["translation_pass_at_k"]["models"]["InCoder-6.7B"]["go->js"] == [39.37, 63.63, 80.75]


def test_the_paper_command_at_a_tiny_scale_runs_end_to_end_and_resumes(data_dir, tmp_path):
    """The embedded model, 2 languages, --scale 0.01: 2 problems each, n=1 (t=0.2) and n=2 (t=0.8), both
    translation pairs; every step, then the report with the published rows; the same command again skips them."""
    out = tmp_path / "paper"
    command = [sys.executable, str(REPO / "eval_humaneval_x.py"), "paper", "--checkpoint",
               str(REPO / "checkpoints" / "codegeex-mini"), "--data-dir", str(data_dir), "--out", str(out),
               "--scale", "0.01", "--languages", "python,js", "--max-new-tokens", "24", "--batch-size", "3"]
    r = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert ("paper run: 2 languages x 2 problems, n=1 (t=0.2) and n=2 (t=0.8), 2 translation pairs: 20 samples "
            "(12 generation, 8 translation), at most 480 generated tokens, 24 program runs") in r.stdout
    record = json.loads((out / "paper.json").read_text())
    assert len(record["steps"]) == 9 and len(record["checkpoint_sha256"]) == 64 and record["device"] == "CPU"
    assert len(read_jsonl(out / "generation-t0.8.jsonl")) == 2 * 2 * 2
    assert {row["src_lang"] for row in read_jsonl(out / "translation-js-t0.8.results.jsonl")} == {"js"}
    md = (out / "report" / "paper.md").read_text()
    assert "| python | 2 | 1 (t=0.2) + 2 (t=0.8) | " in md and "| python->js | 2 | 2 | " in md
    assert "| CodeGeeX-13B | 22.9 | 17.1 | 20.0 | 17.6 | 14.4 | 4.3 | 16.0 |" in md
    assert f"checkpoint_sha256: {record['checkpoint_sha256']}" in md
    report = json.loads((out / "report" / "paper.json").read_text())
    assert report["generation"]["js"]["published"]["pass@1"] == pytest.approx(0.176)
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and again.stdout.count("done earlier") == 9, again.stdout[-2000:]


def test_two_evaluations_on_one_host_never_share_a_sandbox_uid(tmp_path):
    """Each slot claims a uid no other sandbox on this host holds (an flock the kernel releases when the holder
    ends): two shards of a fan-out on one node do not share a uid's process limit."""
    from codegeex_ms.humaneval.sandbox import FIRST_UID, Sandbox
    first, second = Sandbox(tmp_path / "a", isolate=False), Sandbox(tmp_path / "b", isolate=False)
    uids = [first.uid(0), first.uid(1), second.uid(0), second.uid(1)]
    assert len(set(uids)) == 4 and min(uids) >= FIRST_UID
    assert first.uid(0) == uids[0]                          # a slot keeps its uid
    claimed = second.uid(0)
    del second                                              # its claims end with it
    import gc
    gc.collect()
    assert Sandbox(tmp_path / "c", isolate=False).uid(0) == claimed
