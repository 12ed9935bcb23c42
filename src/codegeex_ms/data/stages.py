"""The corpus pipeline's steps, as datatrove pipeline steps (``datatrove.pipeline.base.PipelineStep``).

Each stage runs as datatrove tasks on any of its executors (local processes, a Slurm job array, Ray); tasks talk
only through files under the work folder, one file (or one set) per task, each written under a temporary name and
renamed when complete, so a failed task leaves nothing a rerun would trust. Stage by stage (``pipeline.py`` builds
them):

1. ``SourceReader`` (the files the listing gave this task: language by extension or ``#!`` line, binary check) ->
   ``CodeFilter`` (the original CodeGeeX's filters, counted per language and reason) -> ``FilteredWriter`` (the
   kept documents, ``filtered/RANK.jsonl.gz``, and a small index of their content hashes) -> datatrove's
   ``MinhashDedupSignature`` (word 5-gram shingles of ``\\w+`` tokens, no normalisation; ``filters.lsh_bands``).
2. datatrove's ``MinhashDedupBuckets``: candidate duplicate pairs per band.
3. ``SmallestHashCluster`` (one task): clusters of duplicates (transitively); the member with the smallest
   content hash survives, so what is kept does not depend on how the input was split into tasks.
4. ``FilteredReader`` (this task's ``filtered`` file, in the order stage 1 wrote it, which the removal lists
   address) -> datatrove's ``MinhashDedupFilter`` -> ``TokenWriter`` (language tag, CodeGeeX tokenizer, EOD,
   train/validation by content hash, ``tokens/SPLIT-RANK-PART.tokens``).
5. ``MindRecordExport``: pack or pad each token file into a MindRecord shard (the only stage that imports MindSpore:
   about 350 MB per worker).
"""
from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.word_tokenizers import WordTokenizer

from ..fileio import atomic_write_bytes, atomic_write_text
from .collect import CollectStats, archive_members, classify, detect_language, read_file
from .filters import FilterConfig, content_hash, filter_reason

_WORD = re.compile(r"\w+")


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _counts(nested: dict) -> dict:
    return {lang: dict(sorted(c.items())) for lang, c in sorted(nested.items())}


class CodeWordTokenizer(WordTokenizer):
    """Words of code for MinHash shingles: runs of ``\\w`` characters, case and punctuation kept (datatrove's default
    English tokenizer is spaCy's, meant for prose)."""

    def __init__(self):
        super().__init__("code")

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return text.splitlines()

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class SourceReader(PipelineStep):
    """The source files of this task (the units of ``units/RANK.json``: files, or archives read whole), read and
    classified; a document per file of a wanted language that is text. Writes ``counts/read/RANK.json``: files seen
    per language, skipped files per reason."""

    name = "source files"
    type = "READER"

    def __init__(self, units_dir: Path, counts_dir: Path, languages: tuple, max_invalid_utf8: float,
                 max_bytes: int | None = None):
        """``max_bytes``: a file larger than this (the size filter's limit) is classified by its name and first
        line only and counted as ``dropped_too_large`` without being read whole (files of up to 16 MB, read, decoded
        and hashed only to be dropped, were most of a task's memory)."""
        super().__init__()
        self.units_dir, self.counts_dir = Path(units_dir), Path(counts_dir)
        self.languages, self.max_invalid_utf8, self.max_bytes = tuple(languages), max_invalid_utf8, max_bytes

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        units = json.loads((self.units_dir / f"{rank:05d}.json").read_text())
        stats = CollectStats()
        too_large: Counter = Counter()
        wanted = set(self.languages)
        for unit in units:
            with self.track_time():
                if unit["kind"] == "archive":
                    members = archive_members(Path(unit["path"]), stats)
                elif self.max_bytes is not None and unit["size"] > self.max_bytes:
                    language = large_file_language(unit["label"], Path(unit["path"]), wanted, stats)
                    if language is not None:
                        stats.seen[language] += 1
                        too_large[language] += 1
                    continue
                else:
                    data_ = read_file(Path(unit["path"]), stats)
                    members = [] if data_ is None else [(unit["label"], data_)]
            for label, raw in members:
                found = classify(label, raw, wanted, stats, self.max_invalid_utf8)
                if found is None:
                    continue
                self.stat_update("documents")
                yield Document(found.text, found.label, metadata={"language": found.language, "size": found.size,
                                                                  "hash": content_hash(found.text)})
        write_json(self.counts_dir / f"{rank:05d}.json",
                   {"seen": dict(sorted(stats.seen.items())), "skipped": dict(sorted(stats.skipped.items())),
                    "too_large_to_read": dict(sorted(stats.oversized.items())),
                    "too_large": dict(sorted(too_large.items()))})


def large_file_language(label: str, path: Path, wanted: set, stats: CollectStats) -> str | None:
    """The language of a file from its name and first 200 bytes (``detect_language``, as ``classify``), or None
    (counted in ``stats`` as ``classify`` counts it: not code, unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        stats.skipped["unreadable"] += 1
        return None
    language = detect_language(label, head)
    if language not in wanted:
        stats.skipped["not_code"] += 1
        return None
    return language


class CodeFilter(BaseFilter):
    """The original CodeGeeX's file filters (``filters.filter_reason``); writes ``counts/filter/RANK.json``: files
    dropped per language and reason."""

    name = "CodeGeeX filters"

    def __init__(self, config: FilterConfig, counts_dir: Path):
        super().__init__()
        self.config, self.counts_dir = config, Path(counts_dir)
        self.dropped: dict[str, Counter] = defaultdict(Counter)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = filter_reason(doc.text, doc.metadata["size"], self.config)
        if reason is None:
            return True
        self.dropped[doc.metadata["language"]][f"dropped_{reason}"] += 1
        return False, reason

    def run(self, data, rank: int = 0, world_size: int = 1):
        self.dropped = defaultdict(Counter)
        yield from super().run(data, rank, world_size)
        write_json(self.counts_dir / f"{rank:05d}.json", _counts(self.dropped))


class FilteredWriter(PipelineStep):
    """Writes the task's kept documents to ``filtered/RANK.jsonl.gz`` (stage 4 reads them back in this order) and
    ``index/RANK.tsv`` (position, content hash, language, label: what the cluster stage needs, without the texts),
    both renamed into place when the task's stream ends; passes every document on."""

    name = "filtered documents"
    type = "WRITER"

    def __init__(self, filtered_dir: Path, index_dir: Path):
        super().__init__()
        self.filtered_dir, self.index_dir = Path(filtered_dir), Path(index_dir)

    def run(self, data, rank: int = 0, world_size: int = 1):
        self.filtered_dir.mkdir(parents=True, exist_ok=True)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        path, index_path = self.filtered_dir / f"{rank:05d}.jsonl.gz", self.index_dir / f"{rank:05d}.tsv"
        tmp = path.with_name(path.name + ".tmp")
        index = []
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=3) as out:
            for position, doc in enumerate(data):
                meta = doc.metadata
                out.write(json.dumps({"id": doc.id, "language": meta["language"], "size": meta["size"],
                                      "hash": meta["hash"], "text": doc.text}, ensure_ascii=False) + "\n")
                index.append(f"{position}\t{meta['hash']}\t{meta['language']}\t{doc.id}\n")
                self.stat_update("documents")
                yield doc
        os.replace(tmp, path)
        atomic_write_text(index_path, "".join(index))


class FilteredReader(PipelineStep):
    """This task's ``filtered/RANK.jsonl.gz``, in order: every completed stage-1 task wrote one, empty if it kept
    nothing (datatrove's reader of a whole folder would give task k the k-th file that exists, shifting the later
    tasks' documents, and the removal lists address documents by task and position)."""

    name = "filtered documents"
    type = "READER"

    def __init__(self, filtered_dir: Path):
        super().__init__()
        self.filtered_dir = Path(filtered_dir)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        path = self.filtered_dir / f"{rank:05d}.jsonl.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: stage 1 of task {rank} has not completed")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                self.stat_update("documents")
                yield Document(row["text"], row["id"], metadata={"language": row["language"], "size": row["size"],
                                                                   "hash": row["hash"]})


class SmallestHashCluster(PipelineStep):
    """MinHash stage 3 with a survivor chosen by content: the duplicate pairs of stage 2 (``*.dups``: task and
    position of two documents) joined into clusters (union-find); in each cluster the document with the smallest
    (content hash, label) survives and the others go to ``RANK.remove`` (sorted positions, the format datatrove's
    ``MinhashDedupFilter`` reads). datatrove's own stage keeps the union-find root, which depends on how the
    documents were split into tasks. Writes ``counts/cluster.json``: per language, documents removed as exact
    duplicates (same content hash as the survivor) and as near duplicates."""

    name = "clusters (smallest hash survives)"
    type = "DEDUP"

    def __init__(self, buckets_dir: Path, index_dir: Path, remove_dir: Path, counts_path: Path):
        super().__init__()
        self.buckets_dir, self.index_dir = Path(buckets_dir), Path(index_dir)
        self.remove_dir, self.counts_path = Path(remove_dir), Path(counts_path)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise ValueError(f"the cluster stage runs as one task, got {world_size}")
        parent: dict[tuple[int, int], tuple[int, int]] = {}

        def find(x):
            root = x
            while parent.get(root, root) != root:
                root = parent[root]
            while parent.get(x, x) != root:             # path compression
                parent[x], x = root, parent[x]
            return root

        with self.track_time():
            for dups in sorted(self.buckets_dir.glob("*.dups")):
                pairs = np.fromfile(dups, dtype="<u4").reshape(-1, 4)
                for f1, d1, f2, d2 in pairs.tolist():
                    a, b = find((f1, d1)), find((f2, d2))
                    if a != b:
                        parent[max(a, b)] = min(a, b)
            members = {node for node in parent} | set(parent.values())
            info = {}                                    # (task, position) -> (hash, label, language)
            for path in sorted(self.index_dir.glob("*.tsv")):
                task = int(path.stem)
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        position, digest, language, label = line.rstrip("\n").split("\t", 3)
                        if (task, int(position)) in members:
                            info[(task, int(position))] = (digest, label, language)
            clusters: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
            for node in members:
                clusters[find(node)].append(node)
            removed: dict[int, list[int]] = defaultdict(list)
            counts: dict[str, Counter] = defaultdict(Counter)
            for nodes in clusters.values():
                survivor = min(nodes, key=lambda n: info[n][:2])
                for node in nodes:
                    if node == survivor:
                        continue
                    removed[node[0]].append(node[1])
                    exact = info[node][0] == info[survivor][0]
                    counts[info[node][2]]["dropped_exact_duplicate" if exact else "dropped_near_duplicate"] += 1
                    self.stat_update("removed")
        self.remove_dir.mkdir(parents=True, exist_ok=True)
        for task, positions in removed.items():
            atomic_write_bytes(self.remove_dir / f"{task:06d}.remove", np.array(sorted(positions), "<u4").tobytes())
        write_json(self.counts_path, _counts(counts))


class TokenWriter(PipelineStep):
    """Tag, tokenize (CodeGeeX or sentencepiece tokenizer, loaded in the worker) and end each document with EOD;
    train or validation by content hash; every ``shard_bytes`` of source, one part: ``tokens/SPLIT-RANK-PART.tokens``
    (the int32 ids, appended to the file as each batch is encoded, so a task holds one batch of documents, at most
    ``batch_bytes`` of text) and
    ``.ends.npy`` (each document's end), and its statistics. ``tokens/task-RANK.json``, written last, lists the task's
    parts."""

    name = "tokenize"
    type = "TOKENIZER"

    def __init__(self, tokens_dir: Path, tokenizer_dir: Path, val_fraction: float, shard_bytes: int,
                 batch_docs: int = 256, batch_bytes: int = 2 * 2**20):
        """A batch for the tokenizer ends at ``batch_docs`` documents or ``batch_bytes`` of text, whichever comes
        first: its ids are Python ints (about 36 bytes a token) until they are written, so a batch of large
        documents would hold far more memory than one of small ones."""
        super().__init__()
        self.tokens_dir, self.tokenizer_dir = Path(tokens_dir), Path(tokenizer_dir)
        self.val_fraction, self.shard_bytes = val_fraction, shard_bytes
        self.batch_docs, self.batch_bytes = batch_docs, batch_bytes

    def run(self, data, rank: int = 0, world_size: int = 1):
        from ..languages import add_language_tag
        from ..tokenizer import load
        tokenizer = load(self.tokenizer_dir)
        self.tokens_dir.mkdir(parents=True, exist_ok=True)
        eod = tokenizer.eos_id
        parts = {split: _Part(self.tokens_dir / f"{split}-{rank:05d}-000", split) for split in ("train", "validation")}
        records = []

        def encode(batch: list[Document]) -> None:
            with self.track_time():
                rows = tokenizer.encode_batch([add_language_tag(d.text, d.metadata["language"]) for d in batch])
            for doc, row in zip(batch, rows):
                split = "validation" if is_validation(doc.metadata["hash"], self.val_fraction) else "train"
                parts[split].add(np.append(np.asarray(row, np.int32), np.int32(eod)), doc.metadata)
                self.stat_update("tokens", value=len(row) + 1)
                if parts[split].bytes >= self.shard_bytes:
                    records.append(parts[split].close())
                    parts[split] = parts[split].next()

        batch, size = [], 0
        for doc in data:
            batch.append(doc)
            size += len(doc.text)
            if len(batch) == self.batch_docs or size >= self.batch_bytes:
                encode(batch)
                batch, size = [], 0
        if batch:
            encode(batch)
        for part in parts.values():
            if part.documents:
                records.append(part.close())
            else:
                part.discard()
        write_json(self.tokens_dir / f"task-{rank:05d}.json", {"parts": records})
        return
        yield  # a generator that yields nothing: the last step of its stage


class PeakMemory(PipelineStep):
    """The last step of every stage: passes the documents on, then writes ``memory/STAGE/RANK.json`` with the worker's
    peak resident memory so far (``ru_maxrss``; a pool worker may have run earlier tasks of the same stage) and the
    host it ran on, which the manifest reports per stage."""

    name = "peak memory"
    type = "STATS"

    def __init__(self, memory_dir: Path):
        super().__init__()
        self.memory_dir = Path(memory_dir)

    def run(self, data, rank: int = 0, world_size: int = 1):
        import resource
        import socket
        if data is not None:
            yield from data
        write_json(self.memory_dir / f"{rank:05d}.json",
                   {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                    "host": socket.gethostname()})


def is_validation(digest: str, fraction: float) -> bool:
    return int(digest[:8], 16) / 2**32 < fraction


class _Part:
    """One output part while it fills: its ids appended to ``BASE.tokens.tmp`` (renamed when the part closes), the
    documents' ends and per-language statistics in memory."""

    def __init__(self, base: Path, split: str, index: int = 0):
        self.base, self.split, self.index = base, split, index
        self.tmp = base.with_name(base.name + ".tokens.tmp")
        self.file = open(self.tmp, "wb")
        self.ends, self.length, self.bytes, self.documents = [], 0, 0, 0
        self.tokens, self.files, self.sources = Counter(), Counter(), Counter()

    def add(self, row: np.ndarray, meta: dict) -> None:
        row.astype("<i4").tofile(self.file)
        self.length += len(row)
        self.ends.append(self.length)
        self.bytes += meta["size"]
        self.documents += 1
        self.tokens[meta["language"]] += len(row)
        self.files[meta["language"]] += 1
        self.sources[meta["language"]] += meta["size"]

    def close(self) -> dict:
        self.file.close()
        np.save(self.base.with_name(self.base.name + ".ends.npy"), np.array(self.ends, np.int64))
        os.replace(self.tmp, self.base.with_name(self.base.name + ".tokens"))      # the ids last: a complete part
        return {"file": self.base.name, "split": self.split, "documents": self.documents,
                "tokens": dict(self.tokens), "files": dict(self.files), "bytes": dict(self.sources)}

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink()

    def next(self) -> "_Part":
        index = self.index + 1
        return _Part(self.base.with_name(f"{self.base.name[:-3]}{index:03d}"), self.split, index)


class MindRecordExport(PipelineStep):
    """This task's token files packed (``pack``) or padded (``pad``) into ``windows of seq_len + 1`` ids and written
    as MindRecord shards ``OUT/SPLIT-RANK-PART.mindrecord`` with ``SHARD.json`` statistics; a shard already written
    is kept (idempotent)."""

    name = "MindRecord shards"
    type = "WRITER"

    def __init__(self, tokens_dir: Path, out_dir: Path, seq_len: int, mode: str, stride: int):
        super().__init__()
        self.tokens_dir, self.out_dir = Path(tokens_dir), Path(out_dir)
        self.seq_len, self.mode, self.stride = seq_len, mode, stride

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from .pack import PackedWindows, pad, write_shard
        task = json.loads((self.tokens_dir / f"task-{rank:05d}.json").read_text())
        for part in task["parts"]:
            shard = self.out_dir / f"{part['file']}.mindrecord"
            stats_path = shard.with_name(shard.name + ".json")
            if shard.is_file() and stats_path.is_file():
                continue
            with self.track_time():
                tokens = np.memmap(self.tokens_dir / f"{part['file']}.tokens", dtype="<i4", mode="r")
                ends = np.load(self.tokens_dir / f"{part['file']}.ends.npy")
                eod = int(tokens[ends[0] - 1])                   # every document ends with EOD
                samples = (PackedWindows(tokens, self.seq_len, eod) if self.mode == "pack"
                           else pad(np.split(tokens, ends[:-1]), self.seq_len, eod, self.stride))
                write_shard(shard, samples)
                del tokens
            self.stat_update("shards")
            write_json(stats_path, {**part, "file": shard.name, "samples": int(len(samples))})
        return
        yield
