"""HumanEval-X sampling (codegeex_ms.humaneval.sampling): planning, batching, seeds, prompts and the samples file."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from codegeex_ms.humaneval.sampling import (MergeError, SampleSettings, Unit, merge_samples, plan_units, prompt_for,
                                            shard_ranges, task_seed, write_samples)

IDS = {"python": ["Python/0", "Python/1", "Python/2"], "cpp": ["CPP/0", "CPP/1"]}


def test_plan_lists_the_due_samples_of_each_problem():
    units = plan_units(IDS, n=5, done={"Python/1": 5, "CPP/0": 3})
    assert [(u.task_id, u.first, u.count) for u in units] == [("Python/0", 0, 5), ("Python/2", 0, 5), ("CPP/0", 3, 2),
                                                              ("CPP/1", 0, 5)]
    assert [u.lang for u in units] == ["python", "python", "cpp", "cpp"]


def test_seeds_depend_on_the_run_and_the_problem():
    assert task_seed(7, "Python/0") == task_seed(7, "Python/0")
    assert len({task_seed(7, "Python/0"), task_seed(8, "Python/0"), task_seed(7, "Python/1")}) == 3


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
    """``Generator.run`` in ``rows`` rows: records the samples started; each step finishes the newest running sample
    first (later samples finish before earlier ones), answering with its prompt length and sample index."""

    def __init__(self, max_len, rows):
        self.max_len, self.rows, self.works = max_len, rows, []

    def run(self, pull, on_text=None, on_done=None, cancelled=None):
        running, more = [], True
        while True:
            if more and len(running) < self.rows:
                works = pull(self.rows - len(running), bool(running))
                if works is None:
                    more = False
                else:
                    self.works += works
                    running += [(w, s) for w in works for s in w.samples]
            if not running:
                return {}
            work, sample = running.pop()
            on_done(SimpleNamespace(key=work.key, sample=sample,
                                    completion=lambda w=work, s=sample: f"len{len(w.prompt_ids)}/sample{s}"))


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_write_samples_order_seeds_truncation_and_progress(tmp_path, rows):
    units = plan_units({"python": ["Python/0", "Python/1"]}, n=3, done={"Python/0": 1})
    prompts = {("python", "Python/0"): ("short", [1, 2, 3]), ("python", "Python/1"): ("long", list(range(20)))}
    settings = SampleSettings("generation", max_new_tokens=8, temperature=0.5, seed=11)
    generator, progress = FakeGenerator(max_len=16, rows=rows), []
    with open(tmp_path / "samples.jsonl", "a", encoding="utf-8") as out:
        written = write_samples(generator, units, prompts, settings, out, progress.append)
    rows_out = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert written == len(rows_out) == 5 and sum(progress) == 5
    # problem and sample order, whatever order the samples finished in
    assert [(r["task_id"], r["generation"].split("/")[1]) for r in rows_out] == \
        [("Python/0", "sample1"), ("Python/0", "sample2")] + [("Python/1", f"sample{i}") for i in range(3)]
    # the long prompt keeps its last 16 - 8 tokens and says it was cut
    assert rows_out[2]["generation"].startswith("len8/") and rows_out[2]["prompt_truncated"] is True
    assert "prompt_truncated" not in rows_out[0] and rows_out[0]["prompt"] == "short"
    assert all(w.cfg.seed == task_seed(11, units[w.key].task_id) for w in generator.works)
    assert all(w.cfg.temperature == 0.5 and w.cfg.max_new_tokens == 8 and w.cfg.language == "Python"
               for w in generator.works)
    assert sorted(s for w in generator.works if w.key == 0 for s in w.samples) == [1, 2]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
def test_shards_partition_the_samples_into_contiguous_blocks(count):
    tasks = {"python": ["Python/0", "Python/1", "Python/2"], "cpp": ["CPP/0", "CPP/1"]}
    held = []
    for index in range(count):
        for task_id, (first, end) in shard_ranges(tasks, 4, (index, count)).items():
            held += [(task_id, i) for i in range(first, end)]
    order = [t for ids in tasks.values() for t in ids]
    assert held == [(t, i) for t in order for i in range(4)]          # each sample once, in the run's order
    # a resumed shard continues after what it wrote of a problem
    units = plan_units(tasks, 4, done={"Python/1": 1}, shard=(0, 2))
    assert [(u.task_id, u.first, u.count) for u in units] == [("Python/0", 0, 4), ("Python/1", 1, 3),
                                                              ("Python/2", 0, 2)]


def _shard(index, count, rows_of, settings=None):
    tasks = {"python": ["Python/0", "Python/1"]}
    record = dict(settings or {"seed": 0}, shard={"index": index, "count": count, "n": 3, "tasks": tasks})
    rows = [{"task_id": t, "sample": i, "generation": f"{t}/{i}"}
            for t, (first, end) in shard_ranges(tasks, 3, (index, count)).items() for i in range(first, end)]
    return record, rows_of(rows)


def test_merge_joins_shards_and_refuses_what_is_not_one_run():
    settings, rows = merge_samples([_shard(1, 2, list), _shard(0, 2, lambda r: r[::-1])])
    assert [(r["task_id"], r["sample"]) for r in rows] == [("Python/0", 0), ("Python/0", 1), ("Python/0", 2),
                                                          ("Python/1", 0), ("Python/1", 1), ("Python/1", 2)]
    assert settings["shard"]["count"] == 1 and settings["seed"] == 0
    with pytest.raises(MergeError, match="1 of 6 samples are missing .*Python/1 sample 2"):
        merge_samples([_shard(0, 2, list), _shard(1, 2, lambda r: r[:-1])])
    with pytest.raises(MergeError, match="Python/0 sample 0 appears twice"):
        merge_samples([_shard(0, 2, lambda r: r + r[:1]), _shard(1, 2, list)])
    with pytest.raises(MergeError, match="different settings .*seed: 0 vs 1"):
        merge_samples([_shard(0, 2, list), _shard(1, 2, list, {"seed": 1})])
    with pytest.raises(MergeError, match="needs each of 0..N-1 once"):
        merge_samples([_shard(0, 2, list), _shard(0, 2, list)])
    with pytest.raises(MergeError, match="not one of its samples"):
        merge_samples([_shard(0, 2, lambda r: r + [{"task_id": "Python/1", "sample": 2, "generation": ""}]),
                       _shard(1, 2, lambda r: r[:-1])])
