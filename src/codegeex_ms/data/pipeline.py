"""The end-to-end corpus preparation run, resumable and deterministic, with its manifest.

Stages: collect -> filter -> exact dedup -> near dedup -> split (by content hash) -> per shard: tag,
tokenize (all cores), append EOD, pack/pad, write MindRecord. Each shard holds a fixed, contiguous group
of documents decided before tokenization, so an interrupted run resumes by skipping the shards already
complete (their per-shard stats live in ``<shard>.json``) and the output never depends on where it stopped.
A run whose inputs, options and tokenizer match an existing manifest is recognised and does nothing.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..fileio import atomic_write_text, pyplot, save_figure
from ..languages import add_language_tag
from .collect import TRAINING_LANGUAGES, CollectStats, collect
from .filters import FilterConfig, NearDuplicateIndex, content_hash, filter_reason, minhash_values
from .pack import pack, pad, write_shard

MANIFEST = "manifest.json"
FINGERPRINT = "fingerprint.json"


@dataclass(frozen=True)
class PrepareOptions:
    seq_len: int = 2048
    mode: str = "pack"                  # "pack" or "pad"
    stride: int = 200                   # pad mode: window stride for long documents
    val_fraction: float = 0.01
    shard_bytes: int = 64 * 2**20       # raw source bytes per shard
    languages: tuple = TRAINING_LANGUAGES
    max_invalid_utf8: float = 0.01
    filters: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self):
        if self.mode not in ("pack", "pad"):
            raise ValueError(f"mode must be 'pack' or 'pad', got {self.mode!r}")
        if self.seq_len < 1 or self.stride < 1 or self.shard_bytes < 1:
            raise ValueError("seq_len, stride and shard_bytes must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


class PrepareError(ValueError):
    """The output folder belongs to another run, or the inputs hold nothing usable."""


def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _is_validation(digest: str, fraction: float) -> bool:
    return int(digest[:8], 16) / 2**32 < fraction


def _group(docs: list, shard_bytes: int) -> list[list]:
    groups, current, size = [], [], 0
    for doc in docs:
        current.append(doc)
        size += doc["size"]
        if size >= shard_bytes:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def prepare(inputs: list[Path], out_dir: Path, tokenizer, options: PrepareOptions = PrepareOptions(),
            overwrite: bool = False, command: list[str] | None = None, workers: int | None = None) -> dict:
    """Run the pipeline; returns the manifest (also written to ``out_dir/manifest.json``)."""
    seconds = Counter()
    out_dir = Path(out_dir)
    workers = workers or os.cpu_count() or 1

    start = time.perf_counter()
    stats = CollectStats()
    files = list(tqdm(collect(inputs, options.languages, options.max_invalid_utf8, stats),
                      desc="collect", unit="file", file=sys.stderr))
    seconds["collect"] = time.perf_counter() - start

    per_language: dict[str, Counter] = defaultdict(Counter)
    for lang, n in stats.seen.items():
        per_language[lang]["seen"] = n
    for lang, n in stats.oversized.items():
        per_language[lang]["dropped_too_large"] += n
    start = time.perf_counter()
    survivors, hashes = [], set()
    for f in files:
        reason = filter_reason(f.text, f.size, options.filters)
        if reason:
            per_language[f.language][f"dropped_{reason}"] += 1
            continue
        digest = content_hash(f.text)
        if digest in hashes:
            per_language[f.language]["dropped_exact_duplicate"] += 1
            continue
        hashes.add(digest)
        survivors.append({"label": f.label, "language": f.language, "text": f.text, "size": f.size, "hash": digest})
    seconds["filter"] = time.perf_counter() - start

    start = time.perf_counter()
    if options.filters.near_dup_threshold > 0 and survivors:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            signatures = pool.starmap(minhash_values, [(d["text"], options.filters.num_perm) for d in survivors],
                                      chunksize=64)
        index = NearDuplicateIndex(options.filters.near_dup_threshold, options.filters.num_perm)
        kept = []
        for doc, signature in zip(survivors, signatures):
            if index.is_duplicate(signature):
                per_language[doc["language"]]["dropped_near_duplicate"] += 1
            else:
                kept.append(doc)
        survivors = kept
    seconds["dedup"] = time.perf_counter() - start
    if not survivors:
        raise PrepareError(f"no usable source files under {', '.join(map(str, inputs))} "
                           f"(skipped: {dict(stats.skipped)}; per language: {dict(per_language)})")

    fingerprint = {"input_hash": stats.input_hash.hexdigest(), "tokenizer": tokenizer.identity()["sha256"],
                   "options": json.loads(json.dumps(asdict(options)))}
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path, fingerprint_path = out_dir / MANIFEST, out_dir / FINGERPRINT
    if fingerprint_path.exists():
        previous = json.loads(fingerprint_path.read_text())
        if previous != fingerprint:
            if not overwrite:
                changed = [k for k in fingerprint if previous.get(k) != fingerprint[k]]
                raise PrepareError(f"{out_dir} holds shards of a different run ({', '.join(changed)} changed); "
                                   f"use another output folder or --overwrite")
            for p in out_dir.iterdir():
                if p.is_file():
                    p.unlink()
                else:
                    shutil.rmtree(p)
        elif manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            manifest["up_to_date"] = True
            return manifest
    _write_json(fingerprint_path, fingerprint)

    splits = {"train": [], "validation": []}
    for doc in survivors:
        splits["validation" if _is_validation(doc["hash"], options.val_fraction) else "train"].append(doc)
    shard_stats = []
    eod = tokenizer.eos_id
    jobs = [(split, i, group) for split, docs in splits.items()
            for i, group in enumerate(_group(docs, options.shard_bytes))]
    for split, i, group in tqdm(jobs, desc="tokenize+write", unit="shard", file=sys.stderr):
        path = out_dir / f"{split}-{i:05d}.mindrecord"
        stats_path = path.with_name(path.name + ".json")
        if path.exists() and stats_path.exists():
            shard_stats.append(json.loads(stats_path.read_text()))
            continue
        t0 = time.perf_counter()
        ids = tokenizer.encode_batch([add_language_tag(d["text"], d["language"]) for d in group])
        for row in ids:
            row.append(eod)
        t1 = time.perf_counter()
        samples = (pack(ids, options.seq_len, eod) if options.mode == "pack"
                   else pad(ids, options.seq_len, eod, options.stride))
        write_shard(path, samples)
        tokens, files_ = Counter(), Counter()
        raw = Counter()
        for doc, row in zip(group, ids):
            tokens[doc["language"]] += len(row)
            files_[doc["language"]] += 1
            raw[doc["language"]] += doc["size"]
        record = {"file": path.name, "split": split, "samples": int(len(samples)), "documents": len(group),
                  "tokens": dict(tokens), "files": dict(files_), "bytes": dict(raw),
                  "seconds": {"tokenize": t1 - t0, "pack_write": time.perf_counter() - t1}}
        _write_json(stats_path, record)
        shard_stats.append(record)

    for record in shard_stats:
        seconds["tokenize"] += record["seconds"]["tokenize"]
        seconds["pack_write"] += record["seconds"]["pack_write"]
        for lang, n in record["files"].items():
            per_language[lang]["kept"] += n
            per_language[lang]["bytes"] += record["bytes"][lang]
            per_language[lang]["tokens"] += record["tokens"][lang]
            per_language[lang][f"{record['split']}_tokens"] += record["tokens"][lang]
    manifest = {
        "command": command or [],
        "inputs": [str(Path(i).resolve()) for i in inputs],
        "fingerprint": fingerprint,
        "tokenizer": tokenizer.identity(),
        "seq_len": options.seq_len, "mode": options.mode,
        "skipped": dict(sorted(stats.skipped.items())),
        "languages": {lang: dict(sorted(c.items())) for lang, c in sorted(per_language.items())},
        "splits": {split: {"shards": sum(r["split"] == split for r in shard_stats),
                           "samples": sum(r["samples"] for r in shard_stats if r["split"] == split),
                           "tokens": sum(sum(r["tokens"].values()) for r in shard_stats if r["split"] == split)}
                   for split in ("train", "validation")},
        "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    _write_json(manifest_path, manifest)
    plot_tokens(manifest, out_dir / "tokens_per_language.png")
    return manifest


def plot_tokens(manifest: dict, path: Path) -> None:
    plt = pyplot()
    langs = sorted(manifest["languages"], key=lambda lang: -manifest["languages"][lang].get("tokens", 0))
    tokens = [manifest["languages"][lang].get("tokens", 0) / 1e6 for lang in langs]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(langs) + 2), 3.5))
    ax.bar(langs, tokens)
    ax.set_ylabel("tokens (millions)")
    ax.set_title(f"tokens per language ({sum(tokens):.2f}M in all)")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    save_figure(fig, path)


def summary_table(manifest: dict) -> str:
    """A short human-readable table: per language files seen/kept, dropped, MB and tokens."""
    lines = [f"{'language':<14}{'seen':>8}{'kept':>8}{'dropped':>9}{'MB':>9}{'tokens':>13}"]
    for lang, c in manifest["languages"].items():
        dropped = sum(v for k, v in c.items() if k.startswith("dropped_"))
        lines.append(f"{lang:<14}{c.get('seen', 0):>8}{c.get('kept', 0):>8}{dropped:>9}"
                     f"{c.get('bytes', 0) / 1e6:>9.2f}{c.get('tokens', 0):>13,}")
    skipped = ", ".join(f"{k} {v}" for k, v in manifest["skipped"].items()) or "none"
    s = manifest["splits"]
    lines.append(f"skipped: {skipped}")
    lines.append(f"train: {s['train']['samples']} samples / {s['train']['tokens']:,} tokens in {s['train']['shards']} "
                 f"shards; validation: {s['validation']['samples']} samples / {s['validation']['tokens']:,} tokens")
    return "\n".join(lines)
