"""pass@k from result files: per language (generation) and per source -> target pair (translation), beside the
published figures (``published.py``).

The unbiased estimator of Chen et al. (2021) in the numerically stable product form the original used
(``benchmark/metric.py``): pass@k = 1 - prod_{i=n-c+1}^{n} (1 - k / i), and 1 when n - c < k. A k is
reported only when every problem has at least k samples. Each pass@k comes with its standard error over problems
(the standard deviation of the per-problem estimates over the square root of the problem count: how much the
figure would move on another draw of problems like these and of their samples), and each row with its share of
timed-out programs (a timeout rate that moves with the machine's load says the run timeout is too tight).
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text, pyplot, save_figure
from .dataset import LANGUAGES, language_of_task
from .programs import KNOWN_ISSUES
from .published import (GENERATION_COLUMNS, GENERATION_PASS1, GENERATION_SOURCE, OURS_PUBLISHED_AS,
                        PYTHON_PASS_AT_K, TRANSLATION_PASS_AT_K, TRANSLATION_SOURCE)

KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) is correct."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _scores(per_task: dict[str, list[str]]) -> dict:
    """Scores of one language or pair from each problem's verdicts."""
    ns = [len(v) for v in per_task.values()]
    out = {"problems": len(per_task), "samples": sum(ns), "n_min": min(ns), "n_max": max(ns),
           "timeout_rate": sum(r == "timed out" for v in per_task.values() for r in v) / sum(ns)}
    for k in KS:
        if k <= min(ns):
            per_problem = [pass_at_k(len(v), sum(r == "passed" for r in v), k) for v in per_task.values()]
            out[f"pass@{k}"] = float(np.mean(per_problem))
            if len(per_problem) > 1:
                out[f"pass@{k}_se"] = float(np.std(per_problem, ddof=1) / np.sqrt(len(per_problem)))
    return out


def paper_summary(pass1_rows: list[dict], pass100_rows: list[dict], translation_rows: list[dict]) -> dict:
    """The paper's tables from its three runs: generation pass@1 from the n=20, t=0.2 samples, pass@10/100 from the
    n=200, t=0.8 ones (each with its standard error; the timeout rate over both), translation from its own run."""
    first, second = summarize(pass1_rows), summarize(pass100_rows)
    generation = {}
    for lang, scores in second["generation"].items():
        low = first["generation"].get(lang)
        merged = {key: value for key, value in scores.items() if not key.startswith("pass@1_") and key != "pass@1"}
        if low:
            merged.update({key: low[key] for key in ("pass@1", "pass@1_se") if key in low})
            both = low["samples"] + scores["samples"]
            merged["timeout_rate"] = (low["timeout_rate"] * low["samples"] + scores["timeout_rate"] *
                                      scores["samples"]) / both
            merged["samples"] = both
            merged["n_label"] = f"{low['n_min']} (t=0.2) + {scores['n_min']} (t=0.8)"
        generation[lang] = merged
    translation = summarize(translation_rows)["translation"] if translation_rows else {}
    return {"generation": generation, "translation": translation,
            "known_issues": dict(first["known_issues"], **second["known_issues"])}


def published_for(section: str, key: str) -> dict[str, float]:
    """The published pass@k (fractions) of the model ours converts, for a language or a pair: {} when none."""
    if section == "generation":
        out = {"pass@1": GENERATION_PASS1[OURS_PUBLISHED_AS][GENERATION_COLUMNS.index(key)] / 100} \
            if key in GENERATION_COLUMNS else {}
        if key == "python":
            out.update({f"pass@{k}": v / 100 for k, v in zip(KS, PYTHON_PASS_AT_K[OURS_PUBLISHED_AS])})
        return out
    figures = TRANSLATION_PASS_AT_K[OURS_PUBLISHED_AS].get(key)
    return {f"pass@{k}": v / 100 for k, v in zip(KS, figures)} if figures else {}


def summarize(rows: list[dict]) -> dict:
    """{'generation': {lang: scores}, 'translation': {'src->tgt': scores}} from result rows."""
    generation: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    translation: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if "passed" not in row:
            raise ValueError(f"not a result row (no 'passed' field): {str(row)[:200]}; run `evaluate` first")
        lang = language_of_task(row["task_id"])
        # the verdict; "passed" decides (results written by other harnesses may carry no result string)
        verdict = "passed" if row["passed"] else row.get("result", "failed")
        if row.get("task") == "translation":
            translation[f"{row['src_lang']}->{lang}"][row["task_id"]].append(verdict)
        else:
            generation[lang][row["task_id"]].append(verdict)
    known = sorted({r["task_id"] for r in rows if r["task_id"] in KNOWN_ISSUES})
    summary = {"generation": {lang: _scores(generation[lang]) for lang in LANGUAGES if lang in generation},
               "translation": {pair: _scores(v) for pair, v in sorted(translation.items())},
               "known_issues": {t: KNOWN_ISSUES[t] for t in known}}
    for section in ("generation", "translation"):
        for key, scores in summary[section].items():
            scores["published"] = published_for(section, key)
    return summary


def _table(scores: dict[str, dict], key_name: str) -> tuple[list[str], list[list[str]]]:
    """Rows: ours (pass@k ± standard error), the published figure of CodeGeeX-13B beside each, the timeout rate."""
    ks = [f"pass@{k}" for k in KS if any(f"pass@{k}" in s for s in scores.values())]
    header = [key_name, "problems", "samples/problem"]
    for k in ks:
        header += [k, f"{k} published ({OURS_PUBLISHED_AS})"]
    header.append("timed out %")
    body = []
    for key, s in scores.items():
        n = s.get("n_label") or (str(s["n_min"]) if s["n_min"] == s["n_max"] else f"{s['n_min']}-{s['n_max']}")
        row = [key, str(s["problems"]), n]
        for k in ks:
            ours = f"{100 * s[k]:.2f}" + (f" ± {100 * s[k + '_se']:.2f}" if k + "_se" in s else "") if k in s else ""
            published = s.get("published", {}).get(k)
            row += [ours, "" if published is None else f"{100 * published:.2f}"]
        body.append(row + [f"{100 * s['timeout_rate']:.2f}"])
    return header, body


def published_section() -> list[str]:
    """The published tables in full, for context (other models, every language)."""
    header = ["model"] + list(GENERATION_COLUMNS)
    rows = [[model] + [f"{v:.1f}" for v in values] for model, values in GENERATION_PASS1.items()]
    md = ["## published figures\n", f"Generation pass@1 (%), {GENERATION_SOURCE}:\n", _markdown(header, rows)]
    rows = [[model] + [f"{v:.1f}" for v in values] for model, values in PYTHON_PASS_AT_K.items()]
    md += ["HumanEval (Python) pass@1/10/100 (%), same source (pass@10/100 at n=200, t=0.8):\n",
           _markdown(["model", "pass@1", "pass@10", "pass@100"], rows)]
    md.append(f"Translation pass@1/10/100 (%) per pair: {TRANSLATION_SOURCE}; CodeGeeX-13B's stand beside ours "
              f"above, CodeGen-Multi-16B's and InCoder-6.7B's in the .json report.\n")
    return md


def _markdown(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def write_report(summary: dict, out_prefix: str | Path, meta: dict | None = None) -> list[Path]:
    """Markdown, CSV and JSON tables and a PNG chart (pass@k in %); returns the paths written."""
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    md = ["# HumanEval-X results (pass@k, %)\n"]
    csv_buf = io.StringIO()
    writer = csv.writer(csv_buf)
    for section, key_name in (("generation", "language"), ("translation", "source->target")):
        if summary[section]:
            header, body = _table(summary[section], key_name)
            md += [f"## {section}\n", _markdown(header, body)]
            writer.writerow(["task"] + header)
            writer.writerows([section] + row for row in body)
    md += [f"pass@k ± its standard error over problems. Published: {OURS_PUBLISHED_AS}'s figures (generation "
           f"pass@1 at t=0.2 and Python pass@10/100 at t=0.8: {GENERATION_SOURCE}; translation: "
           f"{TRANSLATION_SOURCE}); compare a pass@k with the published one only at the temperature it was taken "
           f"at.\n"]
    if summary["known_issues"]:
        md.append("## known dataset problems among these tasks\n")
        md += [f"- {t}: {why}" for t, why in summary["known_issues"].items()]
        md.append("")
    md += published_section()
    if meta:
        md.append("## toolchains and provenance\n")
        md += [f"- {k}: {v}" for k, v in meta.get("versions", {}).items()]
        md.append(f"- isolated sandbox: {meta.get('isolated')}; upstream assembly: {meta.get('upstream')}")
        if meta.get("run_timeouts"):
            md.append("- run timeouts (s): " + ", ".join(f"{lang} {t:g}" for lang, t in meta["run_timeouts"].items()))
        for key in ("checkpoint", "checkpoint_sha256", "precision", "device", "code", "scale", "batch_size", "seed",
                    "max_new_tokens", "samples_sha256", "joined_shards", "shard_hosts"):
            if meta.get(key) is not None:
                md.append(f"- {key}: {meta[key]}")
        md.append("")
    for suffix, text in ((".md", "\n".join(md)), (".csv", csv_buf.getvalue()),
                         (".json", json.dumps(dict(summary, meta=meta or {}, published={
                             "generation_pass1": {"columns": GENERATION_COLUMNS, "source": GENERATION_SOURCE,
                                                  "models": GENERATION_PASS1},
                             "python_pass_at_k": PYTHON_PASS_AT_K,
                             "translation_pass_at_k": {"source": TRANSLATION_SOURCE,
                                                       "models": TRANSLATION_PASS_AT_K}}), indent=2) + "\n")):
        path = out_prefix.with_name(out_prefix.name + suffix)
        atomic_write_text(path, text)
        paths.append(path)
    paths.append(_plot(summary, out_prefix.with_name(out_prefix.name + ".png")))
    return paths


def _plot(summary: dict, path: Path) -> Path:
    plt = pyplot()
    gen, trans = summary["generation"], summary["translation"]
    fig, axes = plt.subplots(1, 2 if trans else 1, figsize=(12 if trans else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    ks = [k for k in KS if any(f"pass@{k}" in s for s in gen.values())]
    langs = list(gen)
    width = 0.8 / max(len(ks), 1)
    for i, k in enumerate(ks):
        values = [100 * gen[lang].get(f"pass@{k}", 0.0) for lang in langs]
        bars = ax.bar(np.arange(len(langs)) + i * width, values, width, label=f"pass@{k}")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    published = [100 * gen[lang].get("published", {}).get("pass@1", np.nan) for lang in langs]
    if ks and not np.all(np.isnan(published)):
        ax.scatter(np.arange(len(langs)), published, marker="_", s=400, color="black", zorder=3,
                   label=f"{OURS_PUBLISHED_AS} pass@1, published")
    ax.set_xticks(np.arange(len(langs)) + width * (len(ks) - 1) / 2, langs)
    ax.set_ylabel("%")
    ax.set_title("HumanEval-X generation")
    if ks:
        ax.legend()
    if trans:
        ax = axes[0][1]
        srcs = sorted({p.split("->")[0] for p in trans})
        tgts = sorted({p.split("->")[1] for p in trans})
        grid = np.full((len(srcs), len(tgts)), np.nan)
        for pair, s in trans.items():
            src, tgt = pair.split("->")
            grid[srcs.index(src), tgts.index(tgt)] = 100 * s.get("pass@1", np.nan)
        ax.imshow(grid, cmap="viridis", vmin=0, vmax=100)
        ax.set_xticks(range(len(tgts)), tgts)
        ax.set_yticks(range(len(srcs)), srcs)
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title("translation pass@1 (source rows, target columns)")
    save_figure(fig, path)
    return path
