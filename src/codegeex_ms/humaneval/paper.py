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

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

class PaperStepError(RuntimeError):
    """A step of the plan failed; the same command continues from it."""


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


def execute(work: Plan, out: Path, settings: dict, script: list[str]) -> int:
    """Run the plan's steps (``script`` + each step's arguments, in a child) into ``out``, skipping the steps a
    marker in ``out/steps/`` says finished with the same arguments, then write the report. ``settings``: the
    command's settings, recorded in ``out/paper.json`` with the checkpoint's identity and the code version."""
    from ..fileio import atomic_write_text
    estimate = work.estimate()
    print(f"paper run: {len(work.languages)} languages x {work.problems} problems, n={work.n_pass1} (t=0.2) and "
          f"n={work.n_pass100} (t=0.8), {len(work.pairs)} translation pairs: {estimate['samples']:,} samples "
          f"({estimate['generation_samples']:,} generation, {estimate['translation_samples']:,} translation), at "
          f"most {estimate['max_new_tokens_total']:,} generated tokens, {estimate['executions']:,} program runs")
    (out / "steps").mkdir(parents=True, exist_ok=True)
    record = dict(settings, **checkpoint_identity(Path(settings["checkpoint"])), languages=list(work.languages),
                  problems=work.problems, n=[work.n_pass1, work.n_pass100], estimate=estimate,
                  code=code_version(Path(script[-1]).parent),
                  steps=[{"name": step.name, "argv": step.argv} for step in work.steps])
    atomic_write_text(out / "paper.json", json.dumps(record, indent=2) + "\n")
    for number, step in enumerate(work.steps, 1):
        marker = out / "steps" / (step.name.replace(" ", "_") + ".json")
        if marker.is_file() and json.loads(marker.read_text()) == step.argv and step.output.is_file():
            print(f"[{number}/{len(work.steps)}] {step.name}: done earlier")
            continue
        print(f"[{number}/{len(work.steps)}] {step.name}: {' '.join(step.argv)}", flush=True)
        start = time.perf_counter()
        status = subprocess.run(script + step.argv).returncode
        if status != 0:
            raise PaperStepError(f"step {step.name!r} failed (exit status {status}); run the same command again "
                                 f"to continue from it")
        atomic_write_text(marker, json.dumps(step.argv) + "\n")
        print(f"[{number}/{len(work.steps)}] {step.name}: finished in {time.perf_counter() - start:.0f}s")
    write_paper_report(out, record)
    return 0


def checkpoint_identity(folder: Path) -> dict:
    """What the run's figures belong to: the weights' sha256, the precision the config records, the device."""
    import hashlib
    import mindspore as ms
    import yaml
    from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE
    digest, weights = hashlib.sha256(), Path(folder) / WEIGHTS_FILE
    if weights.is_file():
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    config = yaml.safe_load((Path(folder) / CONFIG_FILE).read_text()) or {}
    return {"checkpoint_sha256": digest.hexdigest() if weights.is_file() else None,
            "precision": config.get("precision"), "device": ms.get_context("device_target")}


def code_version(checkout: Path) -> str:
    """The package version and, when ``checkout`` is in a git checkout, the commit (+dirty when it has changes)."""
    from importlib.metadata import version
    text = version("codegeex-ms")
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "describe", "--always", "--dirty=+dirty"],
                                capture_output=True, text=True, timeout=30)
        if commit.returncode == 0:
            text += f" ({commit.stdout.strip()})"
    except (OSError, subprocess.SubprocessError):
        pass
    return text


def write_paper_report(out: Path, record: dict) -> None:
    """``out/report/paper.*`` from the results files: pass@1 from the t=0.2 run, pass@10/100 from the t=0.8 run."""
    from .execution import read_jsonl
    from .report import paper_summary, write_report
    rows = {path.name: read_jsonl(path) for path in out.glob("*.results.jsonl")}
    translation = [row for name, part in rows.items() if name.startswith("translation-") for row in part]
    summary = paper_summary(rows["generation-t0.2.results.jsonl"], rows["generation-t0.8.results.jsonl"],
                            translation)
    meta = json.loads((out / "generation-t0.8.results.jsonl.meta.json").read_text())
    meta.update({key: record[key] for key in ("checkpoint", "checkpoint_sha256", "precision", "device", "code",
                                              "scale", "batch_size", "seed", "max_new_tokens")})
    paths = write_report(summary, out / "report" / "paper", meta)
    print(paths[0].read_text())
    print("wrote " + ", ".join(map(str, paths)))
