"""pass@k from result files: per language (generation) and per source -> target pair (translation).

The unbiased estimator of Chen et al. (2021) in the numerically stable product form the original used
(``benchmark/metric.py``): pass@k = 1 - prod_{i=n-c+1}^{n} (1 - k / i), and 1 when n - c < k. A k is
reported only when every problem has at least k samples.
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


def _scores(per_task: dict[str, list[bool]]) -> dict:
    ns = [len(v) for v in per_task.values()]
    out = {"problems": len(per_task), "samples": sum(ns), "n_min": min(ns), "n_max": max(ns)}
    for k in KS:
        if k <= min(ns):
            out[f"pass@{k}"] = float(np.mean([pass_at_k(len(v), sum(v), k) for v in per_task.values()]))
    return out


def summarize(rows: list[dict]) -> dict:
    """{'generation': {lang: scores}, 'translation': {'src->tgt': scores}} from result rows."""
    generation: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    translation: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if "passed" not in row:
            raise ValueError(f"not a result row (no 'passed' field): {str(row)[:200]}; run `evaluate` first")
        lang = language_of_task(row["task_id"])
        if row.get("task") == "translation":
            translation[f"{row['src_lang']}->{lang}"][row["task_id"]].append(bool(row["passed"]))
        else:
            generation[lang][row["task_id"]].append(bool(row["passed"]))
    known = sorted({r["task_id"] for r in rows if r["task_id"] in KNOWN_ISSUES})
    return {"generation": {lang: _scores(generation[lang]) for lang in LANGUAGES if lang in generation},
            "translation": {pair: _scores(v) for pair, v in sorted(translation.items())},
            "known_issues": {t: KNOWN_ISSUES[t] for t in known}}


def _table(scores: dict[str, dict], key_name: str) -> tuple[list[str], list[list[str]]]:
    ks = [f"pass@{k}" for k in KS if any(f"pass@{k}" in s for s in scores.values())]
    header = [key_name, "problems", "samples/problem"] + ks
    body = []
    for key, s in scores.items():
        n = str(s["n_min"]) if s["n_min"] == s["n_max"] else f"{s['n_min']}-{s['n_max']}"
        body.append([key, str(s["problems"]), n] + [f"{100 * s[k]:.2f}" if k in s else "" for k in ks])
    return header, body


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
    if summary["known_issues"]:
        md.append("## known dataset problems among these tasks\n")
        md += [f"- {t}: {why}" for t, why in summary["known_issues"].items()]
        md.append("")
    if meta:
        md.append("## toolchains\n")
        md += [f"- {k}: {v}" for k, v in meta.get("versions", {}).items()]
        md.append(f"- isolated sandbox: {meta.get('isolated')}; upstream assembly: {meta.get('upstream')}\n")
    for suffix, text in ((".md", "\n".join(md)), (".csv", csv_buf.getvalue()),
                         (".json", json.dumps(dict(summary, meta=meta or {}), indent=2) + "\n")):
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
