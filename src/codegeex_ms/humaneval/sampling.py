"""Sampling HumanEval-X completions from a model: which samples are still due, how they share decode batches, the
prompt and seed of each, and appending them to a samples file (``eval_humaneval_x.py generate``).

A problem's ``n`` samples are split into units of at most ``batch_size`` rows; units of different problems share
a batch. Each unit's seed depends only on the run seed, the problem and the index of its first sample, so a
resumed or differently batched run draws the same samples.
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from typing import Callable, TextIO

from .dataset import CANONICAL, generation_prompt, translation_prompt


@dataclass(frozen=True)
class Unit:
    lang: str
    task_id: str
    first: int          # index of its first sample among the problem's n
    count: int          # samples (rows) it takes


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


def plan_units(task_ids: dict[str, list[str]], n: int, batch_size: int,
               done: dict[str, int] | None = None) -> list[Unit]:
    """The samples still due: for every language's problems (in order), ``n`` minus those ``done`` (per task id),
    in units of at most ``batch_size``."""
    done = done or {}
    units = []
    for lang, ids in task_ids.items():
        for task_id in ids:
            have = done.get(task_id, 0)
            while have < n:
                count = min(batch_size, n - have)
                units.append(Unit(lang, task_id, have, count))
                have += count
    return units


def pack_batches(units: list[Unit], batch_size: int) -> list[list[Unit]]:
    """Consecutive units packed into decode batches of at most ``batch_size`` rows."""
    batches, current, rows = [], [], 0
    for unit in units:
        if rows + unit.count > batch_size:
            batches.append(current)
            current, rows = [], 0
        current.append(unit)
        rows += unit.count
    if current:
        batches.append(current)
    return batches


def prompt_for(problems: dict[str, dict[str, dict]], unit: Unit, settings: SampleSettings) -> str:
    """The original's prompt for ``unit``: its problem's generation prompt, or the translation from the problem with
    the same number in ``settings.src_lang``."""
    problem = problems[unit.lang][unit.task_id]
    if settings.task == "translation":
        number = unit.task_id.split("/")[1]
        source = next(p for t, p in problems[settings.src_lang].items() if t.split("/")[1] == number)
        return translation_prompt(source, settings.src_lang, problem, unit.lang)
    return generation_prompt(problem, unit.lang)


def unit_seed(run_seed: int, unit: Unit) -> int:
    return zlib.crc32(f"{run_seed}/{unit.task_id}/{unit.first}".encode())


def write_samples(generator, batches: list[list[Unit]], prompts: dict[tuple[str, str], tuple[str, list[int]]],
                  settings: SampleSettings, out: TextIO, progress: Callable[[int], None] = lambda rows: None) -> int:
    """Decode ``batches`` with ``generator`` and append one JSON line per sample to ``out`` (flushed and fsynced
    after every batch, so an interrupted run loses at most the batch in flight). ``prompts[(lang, task_id)]`` is
    (prompt text, token ids); a prompt longer than the cache leaves room for is cut to its end and the row says
    so (``prompt_truncated``). Returns the number of samples written."""
    from ..generation import SamplingConfig
    room = generator.max_len - settings.max_new_tokens
    written = 0
    for batch in batches:
        requests = []
        for unit in batch:
            _, ids = prompts[unit.lang, unit.task_id]
            cfg = SamplingConfig(max_new_tokens=settings.max_new_tokens, greedy=settings.greedy,
                                 temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                                 seed=unit_seed(settings.seed, unit), language=CANONICAL[unit.lang])
            requests.append((ids[-room:], cfg, unit.count))
        for unit, result in zip(batch, generator.generate_rows(requests)):
            prompt, ids = prompts[unit.lang, unit.task_id]
            for completion in result.completions:
                row = {"task_id": unit.task_id, "prompt": prompt, "generation": completion, "task": settings.task}
                if settings.task == "translation":
                    row.update(src_lang=settings.src_lang, tgt_lang=unit.lang)
                if len(ids) > room:
                    row["prompt_truncated"] = True
                out.write(json.dumps(row) + "\n")
                written += 1
        out.flush()
        os.fsync(out.fileno())
        progress(sum(u.count for u in batch))
    return written
