"""Sampling HumanEval-X completions from a model: which samples are still due, the prompt and seed of each, and
appending them to a samples file (``eval_humaneval_x.py generate``).

Sample i of a problem draws its noise from a generator seeded by (the run seed and the problem's id, i) and by
nothing else (``generation.sample_rng``), so a resumed run, another batch size or another split of the work draws
the same samples. The generator decodes them with continuous batching (a finished row takes the next due sample);
the file receives them in problem and sample order as soon as every earlier one is written, so an interrupted run
leaves a prefix of each problem's samples and resumes after it.
"""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, TextIO

from .dataset import CANONICAL, generation_prompt, translation_prompt


@dataclass(frozen=True)
class Unit:
    lang: str
    task_id: str
    first: int          # index of its first due sample among the problem's n
    count: int          # samples due


@dataclass(frozen=True)
class SampleSettings:
    task: str                       # "generation" or "translation"
    max_new_tokens: int
    greedy: bool = False
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 0
    src_lang: str | None = None     # translation: the language translated from


def shard_ranges(task_ids: dict[str, list[str]], n: int, shard: tuple[int, int] = (0, 1)) -> dict[str, tuple[int, int]]:
    """Shard ``index`` of ``count``: a contiguous block of the run's samples in (language, problem, sample) order,
    samples ``index * T // count`` up to ``(index + 1) * T // count`` of T = problems x n (so a shard holds whole
    runs of a problem's samples and shares their prefills); per problem it holds, its sample range [first, end)."""
    index, count = shard
    order = [task_id for ids in task_ids.values() for task_id in ids]
    total = len(order) * n
    lo, hi = index * total // count, (index + 1) * total // count
    ranges = {}
    for k, task_id in enumerate(order):
        first, end = max(lo, k * n), min(hi, (k + 1) * n)
        if first < end:
            ranges[task_id] = (first - k * n, end - k * n)
    return ranges


def plan_units(task_ids: dict[str, list[str]], n: int, done: dict[str, int] | None = None,
               shard: tuple[int, int] = (0, 1)) -> list[Unit]:
    """The samples still due: for every language's problems (in order), the shard's samples of the problem after
    the ``done[task_id]`` it already wrote (a shard writes its samples of a problem in order, from its first)."""
    done = done or {}
    ranges = shard_ranges(task_ids, n, shard)
    units = []
    for lang, ids in task_ids.items():
        for task_id in ids:
            if task_id in ranges:
                first, end = ranges[task_id]
                first += done.get(task_id, 0)
                if first < end:
                    units.append(Unit(lang, task_id, first, end - first))
    return units


class MergeError(ValueError):
    """The shards do not make one run: missing or repeated samples, or different settings."""


def merge_samples(parts: list[tuple[dict, list[dict]]]) -> tuple[dict, list[dict]]:
    """Shards' (settings, rows) -> the run's (settings, rows): checks that the shards are 0..N-1 of one N with the
    same settings, that each holds exactly its samples, and that every (problem, sample) of the run appears exactly
    once; the rows come out in (language, problem, sample) order, as an unsharded run writes them."""
    if not parts:
        raise MergeError("no shards to merge")
    settings = [dict(s) for s, _ in parts]
    shards = [s.pop("shard", None) for s in settings]
    if any(sh is None for sh in shards):
        raise MergeError("a samples file without a shard record (generate --shard I/N writes one)")
    count = shards[0]["count"]
    if any(sh["count"] != count for sh in shards) or sorted(sh["index"] for sh in shards) != list(range(count)):
        raise MergeError(f"the shards are {sorted((sh['index'], sh['count']) for sh in shards)}; a run of N shards "
                         f"needs each of 0..N-1 once")
    for other in settings[1:]:
        changed = [f"{k}: {settings[0].get(k)!r} vs {other.get(k)!r}" for k in sorted(set(settings[0]) | set(other))
                   if settings[0].get(k) != other.get(k)]
        if changed:
            raise MergeError(f"the shards were generated with different settings ({'; '.join(changed)})")
    n, tasks = shards[0]["n"], shards[0]["tasks"]
    if any(sh["n"] != n or sh["tasks"] != tasks for sh in shards):
        raise MergeError("the shards cover different problems or --n")
    order = {task_id: k for k, task_id in enumerate(t for ids in tasks.values() for t in ids)}
    seen: dict[tuple[str, int], dict] = {}
    for (_, rows), sh in zip(parts, shards):
        expected = shard_ranges(tasks, n, (sh["index"], count))
        for row in rows:
            key = (row.get("task_id"), row.get("sample"))
            first, end = expected.get(key[0], (0, 0))
            if not isinstance(key[1], int) or not first <= key[1] < end:
                raise MergeError(f"shard {sh['index']} holds {key[0]} sample {key[1]}, which is not one of its "
                                 f"samples")
            if key in seen:
                raise MergeError(f"{key[0]} sample {key[1]} appears twice")
            seen[key] = row
    missing = [(t, i) for t in order for i in range(n) if (t, i) not in seen]
    if missing:
        shown = ", ".join(f"{t} sample {i}" for t, i in missing[:5])
        raise MergeError(f"{len(missing)} of {len(order) * n} samples are missing ({shown}"
                         f"{' ...' if len(missing) > 5 else ''}): finish those shards (rerun their generate command)")
    rows = [seen[key] for key in sorted(seen, key=lambda key: (order[key[0]], key[1]))]
    return dict(settings[0], shard={"index": 0, "count": 1, "n": n, "tasks": tasks}), rows


def prompt_for(problems: dict[str, dict[str, dict]], unit: Unit, settings: SampleSettings) -> str:
    """The original's prompt for ``unit``: its problem's generation prompt, or the translation from the problem with
    the same number in ``settings.src_lang``."""
    problem = problems[unit.lang][unit.task_id]
    if settings.task == "translation":
        number = unit.task_id.split("/")[1]
        source = next(p for t, p in problems[settings.src_lang].items() if t.split("/")[1] == number)
        return translation_prompt(source, settings.src_lang, problem, unit.lang)
    return generation_prompt(problem, unit.lang)


def task_seed(run_seed: int, task_id: str) -> int:
    """The seed of a problem's samples; sample i then draws from ``generation.sample_rng(task_seed, i)``."""
    return zlib.crc32(f"{run_seed}/{task_id}".encode())


def write_samples(generator, units: list[Unit], prompts: dict[tuple[str, str], tuple[str, list[int]]],
                  settings: SampleSettings, out: TextIO, progress: Callable[[int], None] = lambda rows: None) -> int:
    """Decode the samples of ``units`` with ``generator`` (``Generator.run``) and append one JSON line per sample to
    ``out`` in unit and sample order, flushed and fsynced as soon as a sample and every one before it are done (an
    interrupted run keeps that prefix). ``prompts[(lang, task_id)]`` is (prompt text, token ids); a prompt longer
    than the cache leaves room for is cut to its end and the row says so (``prompt_truncated``). Returns the number
    of samples written."""
    from ..generation import SamplingConfig, Work
    room = generator.max_len - settings.max_new_tokens
    order = [(u, s) for u in units for s in range(u.first, u.first + u.count)]
    finished: dict[tuple[str, int], str] = {}
    queue = list(enumerate(units))
    written = 0

    def pull(free: int, busy: bool) -> list[Work] | None:
        if not queue:
            return None
        works = []
        while queue and free > 0:
            key, unit = queue[0]
            _, ids = prompts[unit.lang, unit.task_id]
            cfg = SamplingConfig(max_new_tokens=settings.max_new_tokens, greedy=settings.greedy,
                                 temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                                 seed=task_seed(settings.seed, unit.task_id), language=CANONICAL[unit.lang])
            k = min(free, unit.count)
            works.append(Work(key, ids[-room:], cfg, list(range(unit.first, unit.first + k))))
            free -= k
            if k == unit.count:
                queue.pop(0)
            else:
                queue[0] = (key, Unit(unit.lang, unit.task_id, unit.first + k, unit.count - k))
        return works

    def done(row) -> None:
        nonlocal written
        finished[units[row.key].task_id, row.sample] = row.completion()
        start = written
        while written < len(order) and (order[written][0].task_id, order[written][1]) in finished:
            unit, sample = order[written]
            prompt, ids = prompts[unit.lang, unit.task_id]
            line = {"task_id": unit.task_id, "sample": sample, "prompt": prompt,
                    "generation": finished.pop((unit.task_id, sample)), "task": settings.task}
            if settings.task == "translation":
                line.update(src_lang=settings.src_lang, tgt_lang=unit.lang)
            if len(ids) > room:
                line["prompt_truncated"] = True
            out.write(json.dumps(line) + "\n")
            written += 1
        if written > start:
            out.flush()
            os.fsync(out.fileno())
            progress(written - start)

    generator.run(pull, on_done=done)
    return written


def merge_sample_files(paths: list[Path], out: Path) -> int:
    """Merge the samples files of generate's shards (each with its .settings.json) into ``out`` and its settings
    (``merge_samples``' checks; both written atomically); returns the number of samples."""
    from .execution import read_jsonl
    from ..fileio import atomic_write_text
    parts = []
    for path in paths:
        if not Path(path).is_file() or not samples_settings_path(path).is_file():
            raise MergeError(f"{path}: no such samples file with its {samples_settings_path(path).name}")
        parts.append((json.loads(samples_settings_path(path).read_text()), read_jsonl(path)))
    settings, rows = merge_samples(parts)
    atomic_write_text(samples_settings_path(out), json.dumps(settings, indent=2) + "\n")
    atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def samples_settings_path(out: Path) -> Path:
    """Where a samples file records what its samples depend on (``OUT.settings.json``)."""
    return Path(out).with_name(Path(out).name + ".settings.json")


def samples_settings(checkpoint: Path, settings: SampleSettings) -> dict:
    """What the samples of a file depend on. Languages, problems and n only add samples (sample i of a problem is
    drawn with a seed of the problem and i alone, so a larger n continues the same draw), so they may change."""
    weights = Path(checkpoint) / "model.safetensors"
    stat = weights.stat() if weights.is_file() else None
    return {"checkpoint": str(Path(checkpoint).resolve()),
            "weights": {"bytes": stat.st_size, "mtime": int(stat.st_mtime)} if stat else None,
            "task": settings.task, "src_lang": settings.src_lang, "max_new_tokens": settings.max_new_tokens,
            "greedy": settings.greedy, "temperature": settings.temperature, "top_p": settings.top_p,
            "top_k": settings.top_k, "seed": settings.seed}


def check_samples_settings(out: Path, checkpoint: Path, settings: SampleSettings, shard: tuple[int, int], n: int,
                           tasks: dict[str, list[str]]) -> None:
    """A samples file continues only with the settings it was started with (recorded next to it, with its shard:
    index, count, n and the problems); a new file records them before its first sample. An unsharded file may
    grow (more n, languages or problems); a shard may not (its block of samples would move)."""
    from ..cli import UsageError
    from ..fileio import atomic_write_text
    current, record = samples_settings(checkpoint, settings), samples_settings_path(out)
    shard_record = {"index": shard[0], "count": shard[1], "n": n, "tasks": tasks}
    if Path(out).is_file() and Path(out).stat().st_size > 0:
        if not record.is_file():
            raise UsageError(f"--out {out} holds samples but no record of the settings they were generated "
                             f"with ({record.name}); choose a new --out")
        old = json.loads(record.read_text())
        changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in current.items() if old.get(k) != v]
        old_shard = old.get("shard", {"index": 0, "count": 1})
        if (old_shard["index"], old_shard["count"]) != tuple(shard) or (shard[1] > 1 and old_shard != shard_record):
            changed.append(f"shard {old_shard['index']}/{old_shard['count']} (n {old_shard.get('n')}) -> "
                           f"{shard[0]}/{shard[1]} (n {n}, or other problems)")
        if changed:
            raise UsageError(f"--out {out} was generated with other settings ({'; '.join(changed)}); continue "
                             f"it with the same ones or choose a new --out")
    atomic_write_text(record, json.dumps(dict(current, shard=shard_record), indent=2) + "\n")
