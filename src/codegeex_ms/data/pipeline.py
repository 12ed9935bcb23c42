"""Corpus preparation as datatrove stages on a local, Slurm or Ray executor: resumable, deterministic, bounded memory.

The driver lists the inputs (paths and sizes, no contents), gives each file or archive to one of ``tasks`` tasks
(contiguous runs of about equal bytes), checks the run's fingerprint, then runs the stages of ``stages.py`` in
order: read + filter + MinHash signatures (``tasks`` tasks), MinHash buckets (a task per LSH band), clusters (1),
dedup + tokenize (``tasks``), MindRecord export (``tasks``), manifest (1). Memory is bounded by a task: a task
streams its files, buffers one output part of tokens (``shard_bytes`` of source), and sorts its own signatures;
only the cluster stage holds something corpus-wide, the documents that have duplicates.

- Resume: a task that completed leaves ``work/logs/STAGE/completions/RANK`` (datatrove's marker) and is skipped by a
  rerun of the same command; a failed task's outputs are rewritten from scratch. The driver checks every stage's
  markers itself and stops with an error naming the stage and its missing tasks (datatrove's Ray executor returns
  normally when tasks failed, and a dependent local stage waits forever for an incomplete one).
- Fingerprint: the listing (paths, sizes, modification times), the options, the tokenizer's sha256, the task count
  and the datatrove version; a different one in the same output folder is refused unless ``overwrite``.
- Determinism: the same inputs, options and task count give the same shards on every executor and for any number
  of workers. Which duplicate survives does not depend on the task count (the smallest content hash); shard
  boundaries do (each task writes its own shards).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from ..engines import Engine, StageError, incomplete_tasks, run_stage, slurm_queue, submit_slurm
from ..fileio import pyplot, save_figure
from .collect import TRAINING_LANGUAGES, CollectStats, assign_tasks, list_units
from .filters import FilterConfig, lsh_bands
from .stages import (CodeFilter, CodeWordTokenizer, FilteredReader, FilteredWriter, MindRecordExport, PeakMemory,
                     SmallestHashCluster, SourceReader, TokenWriter, write_json)

MANIFEST = "manifest.json"
FINGERPRINT = "fingerprint.json"
WORK = "work"
NGRAMS = 5                        # MinHash shingles: 5 consecutive \w+ words, nothing normalised
TASK_BYTES = 128 * 2**20          # default task count: one task per 128 MiB of input, at least 4


class PrepareError(ValueError):
    """An option out of range, an output folder that belongs to another run, inputs that hold nothing usable, or a
    stage that did not complete."""


@dataclass(frozen=True)
class PrepareOptions:
    seq_len: int = 2048
    mode: str = "pack"                  # "pack" or "pad"
    stride: int = 200                   # pad mode: window stride for long documents
    val_fraction: float = 0.01
    shard_bytes: int = 64 * 2**20       # raw source bytes per output shard (per task and split)
    languages: tuple = TRAINING_LANGUAGES
    max_invalid_utf8: float = 0.01
    filters: FilterConfig = field(default_factory=FilterConfig)
    tasks: int | None = None            # None: one per 128 MiB of input, at least 4

    def __post_init__(self):
        if self.mode not in ("pack", "pad"):
            raise PrepareError(f"mode must be 'pack' or 'pad', got {self.mode!r}")
        if self.seq_len < 1 or self.stride < 1 or self.shard_bytes < 1:
            raise PrepareError("seq_len, stride and shard_bytes must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise PrepareError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.tasks is not None and self.tasks < 1:
            raise PrepareError(f"tasks must be >= 1, got {self.tasks}")
        if not 0 <= self.filters.near_dup_threshold < 1:
            raise PrepareError(f"near_dup_threshold must be in [0, 1) (0: off), got {self.filters.near_dup_threshold}")


def stage_pipelines(work: Path, out_dir: Path, tokenizer_dir: Path, options: PrepareOptions) -> dict:
    """Each stage's datatrove pipeline (a list of steps) and task count."""
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupFilter,
                                                  MinhashDedupSignature)
    from datatrove.utils.text import TextNormConfig
    tasks = json.loads((work / "listing.json").read_text())["tasks"]
    bands, rows = lsh_bands(options.filters.near_dup_threshold or 0.85, options.filters.num_perm)
    minhash = MinhashConfig(n_grams=NGRAMS, num_buckets=bands, hashes_per_bucket=rows, seed=1,
                            norm_config=TextNormConfig(lowercase=False, norm_whitespace=False,
                                                       remove_punctuation=False, norm_unicode_diacritics=False,
                                                       norm_numbers=False))
    dedup = options.filters.near_dup_threshold > 0
    read = [SourceReader(work / "units", work / "counts" / "read", options.languages, options.max_invalid_utf8,
                         options.filters.max_bytes),
            CodeFilter(options.filters, work / "counts" / "filter"),
            FilteredWriter(work / "filtered", work / "index")]
    if dedup:
        read.append(MinhashDedupSignature(str(work / "signatures"), config=minhash, language=CodeWordTokenizer()))
    tokenize = [FilteredReader(work / "filtered")]
    if dedup:
        tokenize.append(MinhashDedupFilter(str(work / "remove")))
    tokenize.append(TokenWriter(work / "tokens", tokenizer_dir, options.val_fraction, options.shard_bytes))
    stages = {"read_filter_signatures": (read, tasks)}
    if dedup:
        stages["buckets"] = ([MinhashDedupBuckets(str(work / "signatures"), str(work / "buckets"), config=minhash)],
                             bands)
        stages["clusters"] = ([SmallestHashCluster(work / "buckets", work / "index", work / "remove",
                                                   work / "counts" / "cluster.json")], 1)
    stages["tokenize"] = (tokenize, tasks)
    stages["export"] = ([MindRecordExport(work / "tokens", out_dir, options.seq_len, options.mode, options.stride)],
                        tasks)
    stages["manifest"] = ([ManifestWriter(out_dir)], 1)
    return {name: (pipeline + [PeakMemory(work / "memory" / name)], n) for name, (pipeline, n) in stages.items()}


def prepare(inputs: list[Path], out_dir: Path, tokenizer_dir: Path, options: PrepareOptions = PrepareOptions(),
            engine: Engine = Engine(), overwrite: bool = False, command: list[str] | None = None) -> dict:
    """Run (local, ray) or submit (slurm) the pipeline; returns the manifest (also ``out_dir/manifest.json``), or for
    slurm ``{"submitted": [job ids]}``."""
    from importlib.metadata import version
    from ..tokenizer import load
    out_dir, tokenizer_dir = Path(out_dir), Path(tokenizer_dir).resolve()
    tokenizer = load(tokenizer_dir)
    stats = CollectStats()
    units = list_units(inputs, options.languages, stats)
    input_bytes = sum(u["size"] for u in units)
    tasks = options.tasks or max(4, -(-input_bytes // TASK_BYTES))
    assign_tasks(units, tasks)
    listing_digest = hashlib.sha256(json.dumps([(u["label"], u["size"], u["mtime"]) for u in units]).encode())
    fingerprint = {"inputs": listing_digest.hexdigest(), "tokenizer": tokenizer.identity()["sha256"],
                   "options": json.loads(json.dumps(asdict(options))), "tasks": tasks,
                   "datatrove": version("datatrove")}
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
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        elif manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            manifest["up_to_date"] = True
            return manifest
    write_json(fingerprint_path, fingerprint)
    work = out_dir / WORK
    by_task = defaultdict(list)
    for unit in units:
        by_task[unit["task"]].append(unit)
    for rank in range(tasks):                    # each task reads its own list, not the whole listing
        write_json(work / "units" / f"{rank:05d}.json", by_task[rank])
    write_json(work / "listing.json", {"tasks": tasks, "files_or_archives": len(units), "bytes": input_bytes,
                                       "skipped": dict(stats.skipped), "too_large_to_read": dict(stats.oversized)})
    write_json(work / "run.json", {"command": command or [], "inputs": [str(Path(i).resolve()) for i in inputs],
                                   "tokenizer": tokenizer.identity(), "seq_len": options.seq_len,
                                   "mode": options.mode, "tasks": tasks, "engine": engine.kind})
    stages = stage_pipelines(work, out_dir, tokenizer_dir, options)
    write_json(work / "stages.json", {name: n for name, (_, n) in stages.items()})     # read by status()
    if engine.kind == "slurm":
        return {"submitted": _submit_slurm(stages, work, engine)}
    for name, (pipeline, n) in stages.items():
        start = time.perf_counter()
        _run_stage(name, pipeline, n, work, engine)
        write_json(work / "seconds" / f"{name}.json", {"seconds": round(time.perf_counter() - start, 3)})
        if name == "read_filter_signatures" and not any(p.stat().st_size for p in (work / "index").glob("*.tsv")):
            raise PrepareError(f"no usable source files under {', '.join(map(str, inputs))} ("
                               f"{_collect_summary(work)})")
    return json.loads(manifest_path.read_text())


def _collect_summary(work: Path) -> str:
    counts = _merge_counts(work / "counts" / "read")
    return f"skipped: {dict(counts.get('skipped', {}))}; seen: {dict(counts.get('seen', {}))}"


def _run_stage(name: str, pipeline: list[PipelineStep], tasks: int, work: Path, engine: Engine) -> None:
    try:
        run_stage(name, pipeline, tasks, work / "logs" / name, engine)
    except StageError as e:
        raise PrepareError(str(e)) from None


def _submit_slurm(stages: dict, work: Path, engine: Engine) -> list[str]:
    """The stages' job arrays (chained, only incomplete tasks); their ids go to ``work/slurm_jobs.json`` for
    ``status``/``wait``."""
    job_ids = submit_slurm(stages, work / "logs", work / "slurm_logs", engine, "codegeex")
    write_json(work / "slurm_jobs.json", job_ids)
    return job_ids


def status(out_dir: Path) -> dict:
    """Per stage: tasks completed of tasks (from the completion markers); whether the manifest is written; for a run
    submitted to Slurm, ``queued``: its jobs still in the queue (``squeue`` lines, ``[]`` once none is)."""
    out_dir = Path(out_dir)
    work = out_dir / WORK
    stages = work / "stages.json"
    if not stages.is_file():
        raise PrepareError(f"{out_dir} holds no corpus run (no {stages})")
    counts = json.loads(stages.read_text())
    report = {"stages": {name: {"completed": n - len(incomplete_tasks(work / "logs" / name, n)), "tasks": n}
                         for name, n in counts.items()},
              "done": (out_dir / MANIFEST).is_file()}
    if (work / "slurm_jobs.json").is_file():
        try:
            report["queued"] = slurm_queue(json.loads((work / "slurm_jobs.json").read_text()))
        except StageError as e:
            raise PrepareError(str(e)) from None
    return report


def wait(out_dir: Path, poll_seconds: float = 10.0) -> dict:
    """Wait for a run (e.g. submitted to Slurm) to write its manifest, and return it. A Slurm run whose jobs all left
    the queue without a manifest (a task failed; the later stages were cancelled) raises, naming each stage's
    completed tasks."""
    out_dir = Path(out_dir)
    while True:
        report = status(out_dir)
        if report["done"]:
            return json.loads((out_dir / MANIFEST).read_text())
        if report.get("queued") == []:
            if status(out_dir)["done"]:         # the last job wrote the manifest as it left the queue
                continue
            progress = ", ".join(f"{name} {s['completed']}/{s['tasks']}" for name, s in report["stages"].items())
            raise PrepareError(f"the Slurm jobs of {out_dir} left the queue before the run finished (tasks "
                               f"completed: {progress}); the logs are in {out_dir / WORK / 'slurm_logs'} and "
                               f"{out_dir / WORK / 'logs'}; rerun the same command to submit only the missing tasks")
        time.sleep(poll_seconds)


def _merge_counts(folder: Path) -> dict:
    merged: dict = defaultdict(Counter)
    for path in sorted(folder.glob("*.json")):
        for key, counter in json.loads(path.read_text()).items():
            merged[key].update(counter)
    return merged


class ManifestWriter(PipelineStep):
    """The last stage (one task): every task's counts and shard statistics merged into ``manifest.json`` and
    ``tokens_per_language.png``, in the format of the one-process pipeline it replaced."""

    name = "manifest"
    type = "WRITER"

    def __init__(self, out_dir: Path):
        super().__init__()
        self.out_dir = Path(out_dir)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        write_manifest(self.out_dir)
        return
        yield


def write_manifest(out_dir: Path) -> dict:
    work = out_dir / WORK
    run = json.loads((work / "run.json").read_text())
    listing = json.loads((work / "listing.json").read_text())
    read = _merge_counts(work / "counts" / "read")
    per_language: dict[str, Counter] = defaultdict(Counter)
    for lang, n in read.get("seen", {}).items():
        per_language[lang]["seen"] += n
    for source in (listing.get("too_large_to_read", {}), read.get("too_large_to_read", {}), read.get("too_large", {})):
        for lang, n in source.items():
            per_language[lang]["dropped_too_large"] += n
    for part in (_merge_counts(work / "counts" / "filter"),
                 json.loads((work / "counts" / "cluster.json").read_text())
                 if (work / "counts" / "cluster.json").is_file() else {}):
        for lang, counter in part.items():
            per_language[lang].update(counter)
    skipped = Counter(listing.get("skipped", {})) + Counter(read.get("skipped", {}))
    shards = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.mindrecord.json"))]
    for record in shards:
        for lang, n in record["files"].items():
            per_language[lang]["kept"] += n
            per_language[lang]["bytes"] += record["bytes"][lang]
            per_language[lang]["tokens"] += record["tokens"][lang]
            per_language[lang][f"{record['split']}_tokens"] += record["tokens"][lang]
    seconds = {p.stem: json.loads(p.read_text())["seconds"] for p in sorted((work / "seconds").glob("*.json"))}
    # the manifest's own stage records its peak after this: reported from an earlier run of it, if any
    workers = {d.name: [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
               for d in sorted((work / "memory").glob("*")) if any(d.glob("*.json"))}
    peaks = {name: round(max(w["peak_rss_bytes"] for w in records) / 1e9, 3) for name, records in workers.items()}
    hosts = {name: dict(sorted(Counter(w.get("host", "?") for w in records).items()))
             for name, records in workers.items()}
    manifest = {
        "command": run["command"], "inputs": run["inputs"],
        "fingerprint": json.loads((out_dir / FINGERPRINT).read_text()),
        "tokenizer": run["tokenizer"], "seq_len": run["seq_len"], "mode": run["mode"], "tasks": run["tasks"],
        "engine": run["engine"],
        "skipped": dict(sorted(skipped.items())),
        "languages": {lang: dict(sorted(c.items())) for lang, c in sorted(per_language.items())},
        "splits": {split: {"shards": sum(r["split"] == split for r in shards),
                           "samples": sum(r["samples"] for r in shards if r["split"] == split),
                           "tokens": sum(sum(r["tokens"].values()) for r in shards if r["split"] == split)}
                   for split in ("train", "validation")},
        "stage_seconds": seconds,
        "stage_peak_rss_gb": peaks,          # the largest worker of each stage
        "stage_hosts": hosts,                # tasks of each stage per host that ran them
    }
    write_json(out_dir / MANIFEST, manifest)
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
