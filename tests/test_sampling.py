"""HumanEval-X sampling (codegeex_ms.humaneval.sampling): planning, batching, seeds, prompts and the samples file."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from codegeex_ms.humaneval.sampling import SampleSettings, Unit, plan_units, prompt_for, task_seed, write_samples

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
