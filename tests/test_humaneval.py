"""HumanEval-X harness: pass@k, program assembly, sandboxed execution of all 6 x 164 canonical solutions and of
negative controls, hostile samples, resume, reports and the CLI."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegeex_ms.humaneval.dataset import LANGUAGES, DatasetError, generation_prompt, load_problems, \
    translation_prompt
from codegeex_ms.humaneval.execution import (EvalOptions, canonical_samples, evaluate, read_jsonl,
                                             timeouts_from_canonical)
from codegeex_ms.humaneval.programs import CANNOT_FAIL, PYTHON_HEADER, assemble, canonical_may_fail
from codegeex_ms.humaneval.report import pass_at_k, summarize, write_report
from codegeex_ms.humaneval.toolchains import doctor

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_dir(shared_dir):
    path = shared_dir / "datasets" / "humaneval-x"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def toolchains_ready():
    missing = [c.name for c in doctor() if not c.ok]
    assert not missing, f"toolchains missing (CI installs them; see `eval_humaneval_x.py doctor`): {missing}"


def _binomial_pass_at_k(n, c, k):
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_matches_the_binomial_formula():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    for n, c, k in [(200, 13, 1), (200, 13, 10), (200, 13, 100), (200, 0, 10), (20, 19, 10), (7, 7, 7)]:
        assert pass_at_k(n, c, k) == pytest.approx(_binomial_pass_at_k(n, c, k), abs=1e-12)
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k(5, 1, 10)


def test_summary_reports_only_k_up_to_n(tmp_path):
    rows = [{"task_id": f"Python/{i}", "passed": j < i} for i in range(3) for j in range(10)]
    rows += [{"task_id": "CPP/0", "passed": True, "task": "translation", "src_lang": "python"}]
    s = summarize(rows)
    assert s["generation"]["python"]["pass@1"] == pytest.approx((0 + 0.1 + 0.2) / 3)
    assert s["generation"]["python"]["pass@10"] == pytest.approx((0 + 1 + 1) / 3)
    assert "pass@100" not in s["generation"]["python"]
    assert s["translation"]["python->cpp"]["pass@1"] == 1.0
    paths = write_report(s, tmp_path / "report" / "hx")
    assert [p.suffix for p in paths] == [".md", ".csv", ".json", ".png"] and all(p.stat().st_size for p in paths)
    assert "| python | 3 | 10 | 10.00 ± 5.77 | 22.90 | 66.67 ± 33.33 | 39.60 | 0.00 |" in paths[0].read_text()


def test_prompts_follow_the_original(data_dir):
    py, cpp, rust = (load_problems(data_dir, lang) for lang in ("python", "cpp", "rust"))
    assert generation_prompt(py["Python/0"], "python") == "# language: Python\n" + py["Python/0"]["prompt"]
    assert generation_prompt(rust["Rust/0"], "rust").endswith(rust["Rust/0"]["declaration"] + rust["Rust/0"]["prompt"])
    t = translation_prompt(py["Python/3"], "python", cpp["CPP/3"], "cpp")
    assert t == ("code translation\nPython:\n" + py["Python/3"]["declaration"]
                 + py["Python/3"]["canonical_solution"].rstrip() + "\nC++:\n" + cpp["CPP/3"]["declaration"])


def test_assembly_upstream_and_fixed(data_dir):
    py = load_problems(data_dir, "python")["Python/2"]
    program = assemble(py, "    return 1\nprint('outside')\n", "python")
    assert program == "\n".join(PYTHON_HEADER) + "\n" + py["prompt"] + "    return 1" + "\n" + py["test"] + "\n"
    go = load_problems(data_dir, "go")
    # "list of strings." in the docstring is not a use of package strings (upstream's substring test says it is)
    fixed = assemble(go["Go/158"], go["Go/158"]["canonical_solution"], "go")
    upstream = assemble(go["Go/158"], go["Go/158"]["canonical_solution"], "go", upstream=True)
    assert '"strings"' not in fixed and '"sort"' in fixed
    # Go/2's test uses math.; upstream imports it only when the completion does
    body = "    return number - float64(int(number))\n}\n"
    assert '"math"' in assemble(go["Go/2"], body, "go") and '"math"' not in assemble(go["Go/2"], body, "go",
                                                                                     upstream=True)
    assert upstream.startswith(go["Go/158"]["test_setup"])
    rust = load_problems(data_dir, "rust")["Rust/50"]
    assert "gen_range(b'a'..b'z' + 1)" in assemble(rust, "", "rust")
    assert "gen_range(b'a', b'z' + 1)" in assemble(rust, "", "rust", upstream=True)


def _by_task(rows):
    return {r["task_id"]: r for r in rows}


def test_all_canonical_solutions_pass(data_dir, toolchains_ready, tmp_path):
    out = tmp_path / "canonical.jsonl"
    evaluate(canonical_samples(data_dir, LANGUAGES), out, data_dir, EvalOptions(), progress=False)
    rows = _by_task(read_jsonl(out))
    assert len(rows) == 6 * 164
    failed = {t: r["result"] for t, r in rows.items() if not r["passed"]}
    unexpected = {t: why for t, why in failed.items() if t not in canonical_may_fail(upstream=False)}
    assert not unexpected
    assert {"JavaScript/112", "JavaScript/155", "Rust/32"} <= set(failed)
    assert rows["Rust/32"]["result"] == "failed: no tests ran"
    # every language's canonical run times give its run timeout (evaluate --timeouts-from)
    timeouts = timeouts_from_canonical(list(rows.values()), base=5.0, factor=4.0)
    assert set(timeouts) == set(LANGUAGES) and min(timeouts.values()) >= 5.0


def test_negative_controls_fail(data_dir, toolchains_ready, tmp_path):
    out = tmp_path / "negative.jsonl"
    evaluate(canonical_samples(data_dir, LANGUAGES, negative=True), out, data_dir, EvalOptions(), progress=False)
    rows = _by_task(read_jsonl(out))
    passed = {t for t, r in rows.items() if r["passed"]}
    assert passed <= CANNOT_FAIL and "CPP/23" in passed


HOSTILE = {
    "loop": "    while True:\n        pass\n",
    "fork_bomb": "    import os\n    while True:\n        try:\n            os.fork()\n        except "
                 "OSError:\n            pass\n",
    "memory_bomb": "    x = bytearray(16 << 30)\n    return x\n",
    "write_outside": "    open({target!r}, 'w').write('owned')\n    return 0\n",
    "delete_file": "    import os\n    os.remove({victim!r})\n    return 0\n",
    "network": "    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"
               "    return 0\n",
    "detach": "    import os, subprocess\n    subprocess.Popen(['sleep', '317.25'], start_new_session=True)\n"
              "    subprocess.Popen(['sh', '-c', 'echo $$ > {pidfile}; exec sleep 317.25'], start_new_session=True)\n"
              "    import time; time.sleep(0.5)\n    return 0\n",
    "flood": "    import sys\n    sys.stdout.write('x' * (64 << 20))\n    return 0\n",
}


def _can_isolate() -> bool:
    import tempfile
    from codegeex_ms.humaneval.sandbox import Sandbox
    root = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        return Sandbox(root / "probe").isolated
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_hostile_samples_are_contained(data_dir, toolchains_ready, tmp_path):
    if not _can_isolate():
        pytest.skip("the full sandbox (namespaces, uid drop) needs root with unshare permitted")
    import socket
    import tempfile
    py = load_problems(data_dir, "python")
    outside = Path(tempfile.mkdtemp(dir="/var/tmp"))   # not under /tmp, which the sandbox replaces with its own
    os.chmod(outside, 0o755)
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.1)
    pidfile = tmp_path / "pid.txt"   # the sandbox's /tmp is private, so this write also must not land here
    fmt = {"target": str(outside / "owned.txt"), "victim": str(victim), "port": listener.getsockname()[1],
           "pidfile": str(pidfile)}
    samples = [{"task_id": "Python/0", "generation": body.format(**fmt), "name": name} for name,
               body in HOSTILE.items()]
    samples.append({"task_id": "Python/23", "generation": py["Python/23"]["canonical_solution"], "name": "good"})
    out = tmp_path / "hostile.jsonl"
    evaluate(samples, out, data_dir, EvalOptions(languages=("python",), run_timeout=5), progress=False)
    rows = {r["name"]: r for r in read_jsonl(out)}
    assert rows["good"]["passed"], rows["good"]["result"]
    assert not any(rows[name]["passed"] for name in HOSTILE), {n: rows[n]["result"] for n in HOSTILE}
    assert rows["loop"]["result"] == "timed out"
    assert "MemoryError" in rows["memory_bomb"]["result"]
    assert "PermissionError" in rows["write_outside"]["result"] and not (outside / "owned.txt").exists()
    assert "PermissionError" in rows["delete_file"]["result"] and victim.read_text() == "keep me"
    assert "OSError" in rows["network"]["result"] or "unreachable" in rows["network"]["result"]
    shutil.rmtree(outside)
    with pytest.raises(OSError):   # nothing connected from inside the sandbox
        listener.accept()
    assert not pidfile.exists()
    # a duration no other process on the machine is likely to sleep for: pgrep sees every process here
    leftovers = subprocess.run(["pgrep", "-f", "sleep 317.25"], capture_output=True, text=True).stdout.split()
    assert not leftovers, "a detached grandchild survived its sample"


def test_resume_neither_repeats_nor_loses(data_dir, toolchains_ready, tmp_path):
    py = load_problems(data_dir, "python")
    samples = [{"task_id": t, "generation": py[t]["canonical_solution"] if i % 2 else "    return None\n"}
               for i, t in enumerate(list(py)[:6])]
    samples += [dict(samples[0])]                    # an identical program: run once, reported twice
    out = tmp_path / "results.jsonl"
    evaluate(samples[:3], out, data_dir, EvalOptions(languages=("python",)), progress=False)
    with open(out, "a") as f:
        f.write('{"task_id": "Python/3", "torn')    # a write cut short by a kill
    summary = evaluate(samples, out, data_dir, EvalOptions(languages=("python",)), progress=False)
    assert summary["already_done"] == 3 and summary["programs_run"] == 3
    rows = read_jsonl(out)
    assert sorted(r["sample_index"] for r in rows) == list(range(7))
    assert [r["passed"] for r in sorted(rows, key=lambda r: r["sample_index"])] == [False, True] * 3 + [False]
    assert rows[-1]["cached"] or any(r["cached"] for r in rows)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(REPO / "eval_humaneval_x.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def test_cli_errors_name_the_problem(tmp_path, data_dir):
    r = _cli("evaluate", "--canonical", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "humaneval_python.jsonl.gz not found" in r.stderr
    r = _cli("evaluate", "--canonical", "--languages", "python,cobol", "--data-dir", str(data_dir),
             "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "unknown language(s) cobol" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "Python/0", "generation": "x"}\nnot json\n{"task_id": "Python/1"}\n')
    r = _cli("evaluate", "--samples", str(bad), "--languages", "python", "--data-dir", str(data_dir),
             "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "bad.jsonl, line 2: not JSON" in r.stderr
    with pytest.raises(DatasetError, match="no string 'generation'"):
        evaluate([{"task_id": "Python/1"}], tmp_path / "x.jsonl", data_dir, EvalOptions(languages=("python",)))


def test_cli_generate_evaluate_report(tiny_checkpoint, data_dir, toolchains_ready, tmp_path):
    samples, results = tmp_path / "samples.jsonl", tmp_path / "results.jsonl"
    common = ["--data-dir", str(data_dir), "--languages", "python,js"]
    r = _cli("generate", "--checkpoint", str(tiny_checkpoint), *common, "--limit", "2", "--n", "2",
             "--batch-size", "2", "--max-new-tokens", "16", "--out", str(samples))
    assert r.returncode == 0, r.stderr
    first = read_jsonl(samples)
    assert [row["task_id"] for row in first] == ["Python/0"] * 2 + ["Python/1"] * 2 + ["JavaScript/0"] * 2 + \
        ["JavaScript/1"] * 2
    # resume with a larger n: only the missing samples are drawn, the existing ones are kept as they were
    r = _cli("generate", "--checkpoint", str(tiny_checkpoint), *common, "--limit", "2", "--n", "3",
             "--batch-size", "2", "--max-new-tokens", "16", "--out", str(samples))
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(samples)
    assert len(rows) == 12 and rows[:8] == first
    # other sampling settings on the same file are refused and the file stays as it was
    before = samples.read_bytes()
    r = _cli("generate", "--checkpoint", str(tiny_checkpoint), *common, "--limit", "2", "--n", "3",
             "--batch-size", "2", "--max-new-tokens", "16", "--temperature", "0.2", "--out", str(samples))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "temperature 0.8 -> 0.2" in r.stderr, r.stderr
    assert samples.read_bytes() == before
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = _cli("evaluate", "--samples", str(empty), *common, "--out", str(tmp_path / "r0.jsonl"))
    assert r.returncode == 2 and "holds no samples" in r.stderr
    r = _cli("evaluate", "--samples", str(samples), *common, "--out", str(results))
    assert r.returncode == 0, r.stderr
    r = _cli("report", "--results", str(results), "--out", str(tmp_path / "report"))
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["generation"]) == {"python", "js"} and report["generation"]["python"]["samples"] == 6
    assert report["meta"]["versions"]["python3"].startswith("Python 3")


def test_two_shards_merged_equal_one_run_byte_for_byte(data_dir, tmp_path):
    """The embedded model, 3 problems x n=4: shards 0/2 and 1/2 at batch sizes 2 and 5 (shard 1 interrupted after
    its first samples, then resumed), merged, give the file one unsharded run at batch size 3 writes; merge refuses
    a missing shard and mixed settings."""
    common = ["--data-dir", str(data_dir), "--languages", "python", "--limit", "3", "--n", "4",
              "--max-new-tokens", "24", "--checkpoint", str(REPO / "checkpoints" / "codegeex-mini")]
    whole, parts = tmp_path / "whole.jsonl", [tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"]
    for args in (["--batch-size", "3", "--out", str(whole)],
                 ["--batch-size", "2", "--shard", "0/2", "--out", str(parts[0])],
                 ["--batch-size", "5", "--shard", "1/2", "--out", str(parts[1])]):
        r = _cli("generate", *common, *args)
        assert r.returncode == 0, r.stderr
    rows = read_jsonl(whole)
    assert [(row["task_id"], row["sample"]) for row in rows] == [(f"Python/{t}", i) for t in range(3) for i in range(4)]
    # an interrupted shard: keep its first two samples (and a torn line), then the same command again
    lines = parts[1].read_text().splitlines(keepends=True)
    parts[1].write_text("".join(lines[:2]) + lines[2][:10])
    r = _cli("generate", *common, "--batch-size", "5", "--shard", "1/2", "--out", str(parts[1]))
    assert r.returncode == 0, r.stderr
    r = _cli("merge", "--out", str(tmp_path / "merged.jsonl"), *map(str, parts))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "merged.jsonl").read_bytes() == whole.read_bytes()
    r = _cli("merge", "--out", str(tmp_path / "half.jsonl"), str(parts[0]))
    assert r.returncode == 2 and "needs each of 0..N-1 once" in r.stderr
    other = tmp_path / "other.jsonl"
    r = _cli("generate", *common, "--shard", "1/2", "--seed", "5", "--out", str(other))
    assert r.returncode == 0, r.stderr
    r = _cli("merge", "--out", str(tmp_path / "mixed.jsonl"), str(parts[0]), str(other))
    assert r.returncode == 2 and "different settings (seed: 0 vs 5)" in r.stderr
    # a shard's block cannot change under it
    r = _cli("generate", *common, "--n", "5", "--shard", "1/2", "--out", str(parts[1]))          # the last --n wins
    assert r.returncode == 2 and "shard 1/2" in r.stderr


def test_cli_translation_samples(tiny_checkpoint, data_dir, tmp_path):
    samples = tmp_path / "translation.jsonl"
    r = _cli("generate", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(data_dir), "--task", "translation",
             "--src-lang", "python", "--languages", "python,cpp", "--limit", "2", "--batch-size", "2",
             "--max-new-tokens", "8", "--greedy", "--out", str(samples))
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(samples)
    assert [row["task_id"] for row in rows] == ["CPP/0", "CPP/1"]          # the source language is not a target
    assert all(row["task"] == "translation" and row["src_lang"] == "python" for row in rows)
    cpp = load_problems(data_dir, "cpp")
    assert rows[0]["prompt"].startswith("code translation\nPython:\n") and rows[0]["prompt"].endswith(
        "\nC++:\n" + cpp["CPP/0"]["declaration"])
    out = tmp_path / "results.jsonl"
    evaluate(rows, out, data_dir, EvalOptions(languages=("cpp",)), progress=False)
    summary = summarize(read_jsonl(out))
    assert summary["translation"]["python->cpp"]["problems"] == 2 and not summary["generation"]
