"""HumanEval-X sampling (codegeex_ms.humaneval.sampling): planning, batching, seeds, prompts and the samples file."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from codegeex_ms.humaneval.sampling import (SampleSettings, Unit, pack_batches, plan_units, prompt_for, unit_seed,
                                            write_samples)

IDS = {"python": ["Python/0", "Python/1", "Python/2"], "cpp": ["CPP/0", "CPP/1"]}


def test_plan_splits_each_problem_into_units_and_skips_what_is_done():
    units = plan_units(IDS, n=5, batch_size=2, done={"Python/1": 5, "CPP/0": 3})
    by_task = {}
    for u in units:
        by_task.setdefault(u.task_id, []).append((u.first, u.count))
    assert by_task == {"Python/0": [(0, 2), (2, 2), (4, 1)], "Python/2": [(0, 2), (2, 2), (4, 1)],
                       "CPP/0": [(3, 2)], "CPP/1": [(0, 2), (2, 2), (4, 1)]}
    assert [u.lang for u in units][:3] == ["python"] * 3


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7])
def test_batches_keep_order_and_never_exceed_the_batch(batch_size):
    units = plan_units(IDS, n=4, batch_size=batch_size)
    batches = pack_batches(units, batch_size)
    assert [u for b in batches for u in b] == units
    assert all(sum(u.count for u in b) <= batch_size for b in batches)
    assert all(sum(u.count for u in b) + nxt[0].count > batch_size for b, nxt in zip(batches, batches[1:]))


def test_seeds_depend_on_the_sample_not_on_the_batching():
    seeds = {}
    for batch_size in (1, 2, 5):
        for u in plan_units(IDS, n=5, batch_size=batch_size):
            # the unit's seed is fixed by its problem and first sample, whatever the batching around it
            seeds.setdefault((u.task_id, u.first, u.count), set()).add(unit_seed(7, u))
    assert all(len(s) == 1 for s in seeds.values())
    assert unit_seed(7, Unit("python", "Python/0", 0, 2)) != unit_seed(8, Unit("python", "Python/0", 0, 2))
    assert unit_seed(7, Unit("python", "Python/0", 0, 2)) != unit_seed(7, Unit("python", "Python/0", 2, 2))


def test_translation_prompt_pairs_problems_by_number():
    problems = {"python": {"Python/3": {"prompt": "def f():\n", "declaration": "def f():\n",
                                        "canonical_solution": "    return 3\n"}},
                "cpp": {"CPP/3": {"prompt": "int f() {\n", "declaration": "int f() {\n",
                                  "canonical_solution": "    return 3;\n}\n"}}}
    settings = SampleSettings("translation", 16, src_lang="python")
    prompt = prompt_for(problems, Unit("cpp", "CPP/3", 0, 1), settings)
    assert prompt == "code translation\nPython:\ndef f():\n    return 3\nC++:\nint f() {\n"
    assert prompt_for(problems, Unit("python", "Python/3", 0, 1), SampleSettings("generation", 16)) == \
        "# language: Python\ndef f():\n"


class FakeGenerator:
    """Records the requests; answers each row with its task's prompt length and row index."""

    def __init__(self, max_len):
        self.max_len, self.calls = max_len, []

    def generate_rows(self, requests):
        self.calls.append(requests)
        return [SimpleNamespace(completions=[f"len{len(ids)}/row{i}" for i in range(n)]) for ids, _, n in requests]


def test_write_samples_rows_seeds_truncation_and_progress(tmp_path):
    units = plan_units({"python": ["Python/0", "Python/1"]}, n=3, batch_size=4)
    prompts = {("python", "Python/0"): ("short", [1, 2, 3]), ("python", "Python/1"): ("long", list(range(20)))}
    settings = SampleSettings("generation", max_new_tokens=8, temperature=0.5, seed=11)
    generator, progress = FakeGenerator(max_len=16), []
    with open(tmp_path / "samples.jsonl", "a", encoding="utf-8") as out:
        written = write_samples(generator, pack_batches(units, 4), prompts, settings, out, progress.append)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert written == len(rows) == 6 and sum(progress) == 6
    assert [r["task_id"] for r in rows] == ["Python/0"] * 3 + ["Python/1"] * 3
    # the long prompt keeps its last 16 - 8 tokens and says it was cut
    assert rows[3]["generation"].startswith("len8/") and rows[3]["prompt_truncated"] is True
    assert "prompt_truncated" not in rows[0] and rows[0]["prompt"] == "short"
    cfgs = [cfg for call in generator.calls for _, cfg, _ in call]
    assert [c.seed for c in cfgs] == [unit_seed(11, u) for u in units]
    assert all(c.temperature == 0.5 and c.max_new_tokens == 8 and c.language == "Python" for c in cfgs)
