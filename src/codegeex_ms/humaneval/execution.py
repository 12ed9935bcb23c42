"""Evaluate a samples file: assemble each program, run it in the sandbox, append one result line per sample.

Resumable (samples already in ``--out`` are skipped; a torn last line from a kill is dropped), deduplicated
(identical programs run once, also across resumes), parallel over a pool of worker slots. A shard I of N evaluates
the contiguous block of sample indices [I*T//N, (I+1)*T//N) of the T samples and records the samples' digest, so
``join_results`` can check that the shards of one file cover every sample exactly once.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import queue
import socket
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..fileio import atomic_write_text
from .dataset import LANGUAGES, DatasetError, language_of_task, load_problems
from .programs import assemble, negative_completion
from .sandbox import Sandbox
from .toolchains import Toolchains, versions

REASON_CHARS = 300


@dataclass(frozen=True)
class EvalOptions:
    languages: tuple[str, ...] = LANGUAGES
    workers: int = os.cpu_count() or 1
    compile_timeout: float = 60.0
    run_timeout: float = 15.0
    run_timeouts: dict = field(default_factory=dict)     # language -> its own run timeout (timeouts_from_canonical)
    upstream: bool = False            # exact upstream program assembly and verdicts (no dataset fixes)
    isolate: bool = True
    work_dir: str = "/var/tmp"        # not /tmp: the sandbox mounts a private /tmp


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a .jsonl or .jsonl.gz file; a torn (unterminated, unparsable) last line is ignored."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            if line_no == len(lines):       # the unterminated last line of an interrupted writer
                break
            raise DatasetError(f"{path}, line {line_no}: not JSON ({e})") from None
    return rows


def _failure(prefix: str, text: str, last: bool = False) -> str:
    """The most telling line of a tool's output: the first error line (compilers, JVM, Go, Rust), or the last
    line (``last``: a Python traceback ends with the exception)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("# ")]
    interesting = [ln for ln in lines if "error" in ln.lower() or "assert" in ln.lower() or "panic" in ln.lower()]
    detail = lines[-1] if last and lines else (interesting or lines or ["no output"])[0]
    return f"failed: {prefix}{detail[:REASON_CHARS]}"


def verdict(lang: str, compiled, ran, upstream: bool) -> str:
    """``passed``, ``timed out`` or ``failed: <reason>`` from the compile and run results."""
    if compiled is not None:
        if compiled.timed_out:
            return "timed out"
        if compiled.returncode != 0:
            return _failure("compilation error: ", compiled.stderr or compiled.stdout)
    if ran.timed_out:
        return "timed out"
    if lang == "js":
        # console.assert prints but keeps the exit code 0: any output is a failure (as upstream)
        if ran.stderr.strip() or ran.stdout.strip():
            return _failure("", ran.stderr or ran.stdout)
        return "passed" if upstream or ran.returncode == 0 else f"failed: exit code {ran.returncode}"
    if ran.returncode != 0:
        return _failure("", ran.stderr + "\n" + ran.stdout, last=lang == "python") if (ran.stderr or ran.stdout) else \
            f"failed: exit code {ran.returncode}"
    if not upstream and (("running 0 tests" in ran.stdout and lang == "rust") or
                         ("no tests to run" in ran.output and lang == "go")):
        return "failed: no tests ran"
    return "passed"


def run_program(toolchains: Toolchains, lang: str, task_id: str, program: str, slot: int,
                upstream: bool) -> tuple[str, float | None]:
    """(verdict, seconds the test run took; None when it did not run: compilation failed or timed out)."""
    sandbox = toolchains.sandbox
    recipe = toolchains.recipe(lang, task_id, slot)
    job = sandbox.job_dir(slot)
    try:
        (job / recipe.source).write_text(program, encoding="utf-8")
        compiled = None
        if recipe.compile is not None:
            c = recipe.compile
            compiled = sandbox.run(c.argv, job, slot, c.timeout, c.limits, c.env)
            if compiled.timed_out or compiled.returncode != 0:
                return verdict(lang, compiled, None, upstream), None
        r = recipe.run
        ran = sandbox.run(r.argv, job, slot, r.timeout, r.limits, r.env)
        return verdict(lang, compiled, ran, upstream), round(ran.seconds, 4)
    finally:
        sandbox.cleanup(job)


def program_of(sample: dict, problems: dict, upstream: bool) -> tuple[str, str]:
    """(language, program text) of one sample."""
    task_id = sample.get("task_id")
    if not isinstance(task_id, str):
        raise DatasetError(f"sample without a task_id: {str(sample)[:200]}")
    lang = language_of_task(task_id)
    if task_id not in problems.get(lang, {}):
        raise DatasetError(f"unknown task_id {task_id!r}")
    completion = sample.get("generation", sample.get("completion"))
    if not isinstance(completion, str):
        raise DatasetError(f"sample of {task_id} has no string 'generation' (or 'completion') field")
    problem = problems[lang][task_id]
    prefix = problem["declaration"] if sample.get("task") == "translation" else None
    return lang, assemble(problem, completion, lang, prefix=prefix, upstream=upstream)


def canonical_samples(data_dir, languages, negative: bool = False, limit: int | None = None) -> list[dict]:
    """One sample per problem (the first ``limit`` of each language): the canonical solution (self-test), or a body
    that throws (negative control)."""
    rows = []
    for lang in languages:
        for task_id, problem in list(load_problems(data_dir, lang).items())[:limit]:
            rows.append({"task_id": task_id, "prompt": problem["prompt"],
                         "generation": negative_completion(lang) if negative else problem["canonical_solution"]})
    return rows


def samples_digest(samples: list[dict]) -> str:
    """sha256 of the samples (each row as sorted-key JSON, one per line): what a results file was evaluated from."""
    digest = hashlib.sha256()
    for row in samples:
        digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def shard_block(total: int, shard: tuple[int, int]) -> range:
    """The sample indices of shard ``index`` of ``count``: a contiguous block, the blocks covering 0..total-1."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 <= index < count")
    return range(index * total // count, (index + 1) * total // count)


class JoinError(ValueError):
    """Result shards that do not make one evaluation: missing or repeated samples, or different settings."""


JOINED_KEYS = ("samples_sha256", "samples", "upstream", "compile_timeout", "run_timeout", "run_timeouts", "versions")


def join_results(parts: list[tuple[str, dict, list[dict]]]) -> tuple[dict, list[dict]]:
    """Result shards (name, meta, rows) -> one evaluation's (meta, rows in sample order): the shards must be 0..N-1
    of one N over the same samples, with the same options and toolchain versions, and every sample index of the
    samples must appear exactly once."""
    if not parts:
        raise JoinError("no result shards given")
    for name, meta, _ in parts:
        if "shard" not in meta or "samples_sha256" not in meta:
            raise JoinError(f"{name}: not the results of evaluate --shard (its .meta.json records no shard)")
    count = parts[0][1]["shard"]["count"]
    indices = sorted(meta["shard"]["index"] for _, meta, _ in parts)
    if any(meta["shard"]["count"] != count for _, meta, _ in parts) or indices != list(range(count)):
        got = ", ".join(f"{meta['shard']['index']}/{meta['shard']['count']}" for _, meta, _ in parts)
        raise JoinError(f"expected shards 0/{count} .. {count - 1}/{count} once each, got {got}")
    first_name, first = parts[0][0], parts[0][1]
    for name, meta, _ in parts[1:]:
        for key in JOINED_KEYS:
            if meta.get(key) != first.get(key):
                raise JoinError(f"{name} and {first_name} differ in {key} ({meta.get(key)!r} against "
                                f"{first.get(key)!r}): not shards of one evaluation")
    by_index: dict[int, dict] = {}
    for name, meta, rows in parts:
        block = shard_block(meta["samples"], (meta["shard"]["index"], count))
        for row in rows:
            index = row.get("sample_index")
            if index not in block:
                raise JoinError(f"{name}: sample {index} is outside its shard's block [{block.start}, {block.stop})")
            if index in by_index:
                raise JoinError(f"{name}: sample {index} appears twice")
            by_index[index] = row
    missing = [i for i in range(first["samples"]) if i not in by_index]
    if missing:
        raise JoinError(f"{len(missing)} of {first['samples']} samples have no result (first: {missing[:5]}); "
                        f"finish their shards (rerun the same evaluate command) first")
    meta = {key: first.get(key) for key in JOINED_KEYS}
    meta["isolated"] = all(m.get("isolated") for _, m, _ in parts)
    meta["shard_hosts"] = [m.get("host") for _, m, _ in sorted(parts, key=lambda part: part[1]["shard"]["index"])]
    meta["joined_shards"] = count
    return meta, [by_index[i] for i in range(first["samples"])]


def timeouts_from_canonical(rows: list[dict], base: float, factor: float) -> dict[str, float]:
    """Each language's run timeout: max(base, factor x its slowest canonical solution's run) from the results of
    ``evaluate --canonical`` on this machine (as evalplus does per task: a program may take a few times the
    reference's time before it counts as looping, and a fast language does not wait as long as a slow one).
    Canonical programs that did not run (a known compile failure) or timed out are left out."""
    slowest: dict[str, float] = {}
    seen: set[str] = set()
    for row in rows:
        lang = language_of_task(row["task_id"])
        seen.add(lang)
        if row.get("run_seconds") is not None and row.get("result") != "timed out":
            slowest[lang] = max(slowest.get(lang, 0.0), float(row["run_seconds"]))
    if seen - set(slowest):
        raise DatasetError(f"no canonical run times of {', '.join(sorted(seen - set(slowest)))} (results from before "
                           f"run times were recorded, or every canonical program failed to run); run evaluate "
                           f"--canonical again")
    return {lang: round(max(base, factor * seconds), 2) for lang, seconds in slowest.items()}


def results_meta_path(results: Path) -> Path:
    return Path(results).with_name(Path(results).name + ".meta.json")


def join_result_files(paths: list[Path], out: Path) -> int:
    """Join the results files of evaluate's shards (each with its .meta.json) into ``out`` and its meta
    (``join_results``' checks; both written atomically); returns the number of results."""
    parts = []
    for path in paths:
        if not results_meta_path(path).is_file():
            raise JoinError(f"{path}: no such results file with its {results_meta_path(path).name} (an unfinished "
                            f"shard: rerun its evaluate command)")
        parts.append((str(path), json.loads(results_meta_path(path).read_text()), read_jsonl(path)))
    meta, rows = join_results(parts)
    atomic_write_text(results_meta_path(out), json.dumps(meta, indent=2) + "\n")
    atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def completed_rows(out_path: Path) -> list[dict]:
    """Lines already written to an appended-to JSONL file; rewrites it (atomically) without a torn last line."""
    if not out_path.exists():
        return []
    rows = read_jsonl(out_path)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if out_path.read_text(encoding="utf-8") != text:
        atomic_write_text(out_path, text)
    return rows


def _check_continuation(out_path: Path, meta_path: Path, samples: list[dict], digest: str,
                        shard: tuple[int, int]) -> None:
    """A results file continues only over its own samples and shard. An unsharded one may continue over a samples
    file that grew (generation still running); a shard's block depends on the sample count, so it continues only
    over the very same samples."""
    if not (out_path.is_file() and out_path.stat().st_size and meta_path.is_file()):
        return
    old = json.loads(meta_path.read_text())
    old_shard = old.get("shard", {"index": 0, "count": 1})
    seen = len(samples) if shard != (0, 1) else old.get("samples", len(samples))
    same = seen <= len(samples) and old.get("samples_sha256", digest) in (digest, samples_digest(samples[:seen]))
    if not same or (old_shard["index"], old_shard["count"]) != tuple(shard):
        raise DatasetError(f"{out_path} holds results of other samples or another shard "
                           f"({old_shard['index']}/{old_shard['count']}); choose a new results file")


def _pending_programs(samples: list[dict], block: range, done: set[int], problems: dict,
                      options: EvalOptions) -> tuple[dict[str, list[tuple[int, dict, str, str]]], Counter]:
    """The block's samples not yet in the results, grouped by program (sha256 of task id and program text: an
    identical program runs once), and the count of samples of languages outside ``options.languages``."""
    pending: dict[str, list[tuple[int, dict, str, str]]] = defaultdict(list)
    skipped_languages = Counter()
    for index in block:
        sample = samples[index]
        if index in done:
            continue
        lang = language_of_task(sample.get("task_id", "?/"))
        if lang not in options.languages:
            skipped_languages[lang] += 1
            continue
        lang, program = program_of(sample, problems, options.upstream)
        sha = hashlib.sha256(f"{sample['task_id']}\0{program}".encode()).hexdigest()
        pending[sha].append((index, sample, lang, program))
    return pending, skipped_languages


def evaluate(samples: list[dict], out_path: str | Path, data_dir: str | Path, options: EvalOptions = EvalOptions(),
             progress: bool = True, shard: tuple[int, int] = (0, 1)) -> dict:
    """Evaluate ``samples`` (dicts in the original's format; ``shard``: only block I of N of them) into
    ``out_path``; returns a summary."""
    out_path = Path(out_path)
    meta_path = out_path.with_name(out_path.name + ".meta.json")
    block = shard_block(len(samples), shard)
    digest = samples_digest(samples)
    problems = {lang: load_problems(data_dir, lang) for lang in options.languages}
    _check_continuation(out_path, meta_path, samples, digest, shard)
    done_rows = completed_rows(out_path)
    done = {r["sample_index"] for r in done_rows if "sample_index" in r}
    known = {r["program_sha256"]: (r["result"], r.get("run_seconds")) for r in done_rows if "program_sha256" in r}
    pending, skipped_languages = _pending_programs(samples, block, done, problems, options)
    sandbox = Sandbox(Path(options.work_dir) / f"codegeex-ms-humaneval-{os.getpid()}", isolate=options.isolate)
    if sandbox.warning:
        print(f"warning: {sandbox.warning}", file=sys.stderr)
    toolchains = Toolchains(sandbox, options.compile_timeout, options.run_timeout, run_timeouts=options.run_timeouts)
    meta = {"versions": versions(), "isolated": sandbox.isolated, "upstream": options.upstream,
            "compile_timeout": options.compile_timeout, "run_timeout": options.run_timeout,
            "run_timeouts": {lang: options.run_timeouts.get(lang, options.run_timeout) for lang in options.languages},
            "samples_sha256": digest, "samples": len(samples), "shard": {"index": shard[0], "count": shard[1]},
            "host": socket.gethostname()}
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    start = time.monotonic()
    slots: queue.Queue = queue.Queue()
    for slot in range(options.workers):
        slots.put(slot)

    def job(sha: str) -> tuple[str, float | None]:
        _, sample, lang, program = pending[sha][0]
        slot = slots.get()
        try:
            return run_program(toolchains, lang, sample["task_id"], program, slot, options.upstream)
        finally:
            slots.put(slot)

    counts = Counter()
    try:
        for lang in {entries[0][2] for entries in pending.values()}:
            toolchains.prepare(lang)
        with open(out_path, "a", encoding="utf-8") as out, ThreadPoolExecutor(options.workers) as pool:
            def write(sha: str, outcome: tuple[str, float | None], cached: bool):
                result, seconds = outcome
                for index, sample, lang, _ in pending[sha]:
                    row = dict(sample, sample_index=index, passed=result == "passed", result=result,
                               run_seconds=seconds, program_sha256=sha, cached=cached)
                    out.write(json.dumps(row) + "\n")
                    counts[(lang, result == "passed")] += 1
                out.flush()
                os.fsync(out.fileno())

            for sha in [s for s in pending if s in known]:
                write(sha, known[sha], True)
            todo = [s for s in pending if s not in known]
            futures = {pool.submit(job, sha): sha for sha in todo}
            with tqdm(total=len(todo), desc="evaluating", unit="program", disable=not progress) as bar:
                for future in as_completed(futures):
                    write(futures[future], future.result(), False)
                    bar.update()
    finally:
        Sandbox.cleanup(sandbox.root)
    summary = {"programs_run": len([s for s in pending if s not in known]), "samples": sum(counts.values()),
               "run_timeouts": meta["run_timeouts"],
               "already_done": len(done), "seconds": time.monotonic() - start,
               "passed": {lang: counts[(lang, True)] for lang in options.languages},
               "total": {lang: counts[(lang, True)] + counts[(lang, False)] for lang in options.languages},
               "skipped_languages": dict(skipped_languages), "isolated": sandbox.isolated}
    return summary
