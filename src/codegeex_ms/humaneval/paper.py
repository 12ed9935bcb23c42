"""The paper's HumanEval-X settings as one plan of ``eval_humaneval_x.py`` commands (``eval_humaneval_x.py paper``).

The published tables rest on these settings (CodeGeeX2's README for generation; the CodeGeeX scripts
``generate_humaneval_x.sh`` / ``translate_humaneval_x.sh`` for translation: temperature 0.8, top-p 0.95, 200 samples,
up to 1,024 new tokens):

- generation pass@1: n=20, temperature 0.2, top-p 0.95;
- generation pass@10 and pass@100: n=200, temperature 0.8, top-p 0.95;
- translation pass@1/10/100: every ordered pair of the languages, n=200, temperature 0.8, top-p 0.95, the
  original's translation template (source declaration + canonical solution, then the target declaration).

Before them the canonical solutions run once on this machine, and each language's run timeout is
max(--run-timeout, --timeout-factor x its slowest canonical run). ``scale`` shrinks the problems per language and
both n by the same factor (at least 1 each) for a smoke run; pass@k is reported only where n >= k. Every step is a
command that appends to its own file and continues where it stopped, so the whole plan resumes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROBLEMS = 164
PASS1 = {"n": 20, "temperature": 0.2, "top_p": 0.95}
PASS100 = {"n": 200, "temperature": 0.8, "top_p": 0.95}
MAX_NEW_TOKENS = 1024          # the original's --out-seq-length


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]            # eval_humaneval_x.py arguments
    output: Path               # the file the step completes


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    problems: int              # per language
    n_pass1: int
    n_pass100: int
    languages: tuple[str, ...]
    pairs: list[tuple[str, str]]
    max_new_tokens: int

    def estimate(self) -> dict:
        """The work: samples to generate, an upper bound on the tokens generated, programs to execute."""
        generation = self.problems * len(self.languages) * (self.n_pass1 + self.n_pass100)
        translation = self.problems * len(self.pairs) * self.n_pass100
        samples = generation + translation
        return {"generation_samples": generation, "translation_samples": translation, "samples": samples,
                "max_new_tokens_total": samples * self.max_new_tokens,
                "executions": samples + self.problems * len(self.languages)}


def scaled(full: int, scale: float) -> int:
    return max(1, round(full * scale))


def plan(checkpoint: Path, out: Path, data_dir: Path, languages: tuple[str, ...], scale: float = 1.0,
         batch_size: int = 1, max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0, workers: int | None = None,
         run_timeout: float = 5.0, timeout_factor: float = 4.0) -> Plan:
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    problems, n1, n2 = scaled(PROBLEMS, scale), scaled(PASS1["n"], scale), scaled(PASS100["n"], scale)
    langs = ",".join(languages)
    common = ["--data-dir", str(data_dir)]
    sampling = ["--checkpoint", str(checkpoint), "--limit", str(problems), "--batch-size", str(batch_size),
                "--max-new-tokens", str(max_new_tokens), "--seed", str(seed)]
    evaluating = (["--workers", str(workers)] if workers else []) + [
        "--timeouts-from", str(out / "canonical.jsonl"), "--run-timeout", str(run_timeout),
        "--timeout-factor", str(timeout_factor)]
    steps = [Step("canonical", ["evaluate", *common, "--languages", langs, "--canonical", "--limit", str(problems),
                                "--run-timeout", "60", "--out", str(out / "canonical.jsonl")]
                  + (["--workers", str(workers)] if workers else []), out / "canonical.jsonl")]
    for label, settings, n in (("generation-t0.2", PASS1, n1), ("generation-t0.8", PASS100, n2)):
        samples = out / f"{label}.jsonl"
        steps.append(Step(f"generate {label}", ["generate", *common, "--languages", langs, *sampling, "--n", str(n),
                                                "--temperature", str(settings["temperature"]),
                                                "--top-p", str(settings["top_p"]), "--out", str(samples)], samples))
        steps.append(Step(f"evaluate {label}", ["evaluate", *common, "--languages", langs, "--samples", str(samples),
                                                *evaluating, "--out", str(results_of(samples))], results_of(samples)))
    pairs = [(src, tgt) for src in languages for tgt in languages if src != tgt]
    for src in languages if len(languages) > 1 else ():
        samples = out / f"translation-{src}-t0.8.jsonl"
        targets = ",".join(lang for lang in languages if lang != src)
        steps.append(Step(f"translate from {src}", [
            "generate", *common, "--task", "translation", "--src-lang", src, "--languages", targets, *sampling,
            "--n", str(n2), "--temperature", str(PASS100["temperature"]), "--top-p", str(PASS100["top_p"]),
            "--out", str(samples)], samples))
        steps.append(Step(f"evaluate translations from {src}", [
            "evaluate", *common, "--languages", targets, "--samples", str(samples), *evaluating,
            "--out", str(results_of(samples))], results_of(samples)))
    return Plan(steps, problems, n1, n2, tuple(languages), pairs, max_new_tokens)


def results_of(samples: Path) -> Path:
    return samples.with_name(samples.name.replace(".jsonl", ".results.jsonl"))
