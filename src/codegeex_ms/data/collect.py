"""Collect source files from directories and ``.tar``/``.tar.gz``/``.zip`` archives.

Every file ends up either as a ``SourceFile`` (language known, decoded text) or as a counted skip:
``not_code`` (no training language), ``binary`` (NUL bytes or too much invalid UTF-8), ``unreadable``,
``symlink_loop``, ``too_large_to_read``. The walk is deterministic (sorted names) and never follows a
directory it has already visited, so symlink loops end.
"""
from __future__ import annotations

import errno
import hashlib
import os
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..languages import canonical_language, language_from_path

# The earliest language-tag table of the original repository (2022-12-04), probably the pre-training set.
# The paper says 23 languages; which of these 24 is the extra one is not documented.
TRAINING_LANGUAGES = ("C++", "C", "C#", "Cuda", "Objective-C", "Objective-C++", "Python", "Java", "Scala", "TeX",
                      "HTML", "PHP", "JavaScript", "TypeScript", "Go", "Shell", "Rust", "CSS", "SQL", "Kotlin",
                      "Pascal", "R", "Fortran", "Lean")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
READ_LIMIT = 16 * 2**20          # files beyond this are never read (the size filter drops them anyway)


class CorpusError(ValueError):
    """A source archive of the corpus that cannot be read (the message names it)."""


@dataclass
class SourceFile:
    label: str                    # path, or "archive!member"
    language: str
    text: str
    size: int                     # bytes on disk


@dataclass
class CollectStats:
    skipped: Counter = field(default_factory=Counter)        # reason -> files
    seen: Counter = field(default_factory=Counter)           # language -> files of that language found
    oversized: Counter = field(default_factory=Counter)      # language -> files too big to read
    input_hash: "hashlib._Hash" = field(default_factory=hashlib.sha256)


def detect_language(label: str, head: bytes) -> str | None:
    """The language of a file from its name (an archive member's after the ``!``) and its first line (``#!``),
    read from the first 200 bytes of ``head``."""
    first_line = head[:200].split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return language_from_path(label.rsplit("!", 1)[-1], first_line)


def classify(label: str, data: bytes, languages: set[str], stats: CollectStats,
             max_invalid_utf8: float) -> SourceFile | None:
    """The file as a SourceFile, or None (counted in ``stats``): not a wanted language, or binary."""
    language = detect_language(label, data)
    if language not in languages:
        stats.skipped["not_code"] += 1
        return None
    stats.seen[language] += 1
    stats.input_hash.update(label.encode() + b"\0" + hashlib.sha256(data).digest())
    if b"\0" in data:
        stats.skipped["binary"] += 1
        return None
    text = data.decode("utf-8", errors="replace")
    if data and (len(text) - len(data.decode("utf-8", errors="ignore"))) / len(data) > max_invalid_utf8:
        stats.skipped["binary"] += 1
        return None
    return SourceFile(label, language, text, len(data))


def _walk_directory(root: Path, stats: CollectStats) -> Iterator[tuple[str, Path]]:
    visited = set()
    for directory, dirnames, filenames in os.walk(root, followlinks=True,
                                                  onerror=lambda e: stats.skipped.update(["unreadable"])):
        try:
            st = os.stat(directory)
        except OSError:
            stats.skipped["symlink_loop"] += 1
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:
            stats.skipped["symlink_loop"] += 1
            dirnames[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            yield os.path.join(directory, name), Path(directory) / name


def read_file(path: Path, stats: CollectStats, language_hint: str | None = None) -> bytes | None:
    try:
        size = path.stat().st_size
        if size > READ_LIMIT:
            if language_hint:
                stats.oversized[language_hint] += 1
            stats.skipped["too_large_to_read"] += 1
            return None
        return path.read_bytes()
    except OSError as e:
        stats.skipped["symlink_loop" if e.errno == errno.ELOOP else "unreadable"] += 1
        return None


def archive_members(path: Path, stats: CollectStats) -> Iterator[tuple[str, bytes]]:
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                for info in sorted(z.infolist(), key=lambda i: i.filename):
                    if info.is_dir():
                        continue
                    if info.file_size > READ_LIMIT:
                        stats.skipped["too_large_to_read"] += 1
                        continue
                    yield f"{path}!{info.filename}", z.read(info)
        else:
            with tarfile.open(path) as t:
                members = sorted((m for m in t.getmembers() if m.isfile()), key=lambda m: m.name)
                for m in members:
                    if m.size > READ_LIMIT:
                        stats.skipped["too_large_to_read"] += 1
                        continue
                    f = t.extractfile(m)
                    if f is None:
                        stats.skipped["unreadable"] += 1
                        continue
                    yield f"{path}!{m.name}", f.read()
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise CorpusError(f"cannot read archive {path}: {e}") from None


def collect(inputs: list[Path], languages=TRAINING_LANGUAGES, max_invalid_utf8: float = 0.01,
            stats: CollectStats | None = None) -> Iterator[SourceFile]:
    """Yield the source files of ``languages`` found under ``inputs`` (directories, archives or single files)."""
    wanted = {canonical_language(lang) for lang in languages}
    stats = stats if stats is not None else CollectStats()
    for root in inputs:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"input {root} does not exist")
        if root.is_file() and root.name.lower().endswith(ARCHIVE_SUFFIXES):
            for label, data in archive_members(root, stats):
                found = classify(label, data, wanted, stats, max_invalid_utf8)
                if found:
                    yield found
            continue
        entries = [(str(root), root)] if root.is_file() else _walk_directory(root, stats)
        for label, path in entries:
            hint = language_from_path(path)
            data = read_file(path, stats, hint if hint in wanted else None)
            if data is None:
                continue
            found = classify(label, data, wanted, stats, max_invalid_utf8)
            if found:
                yield found


def list_units(inputs: list[Path], languages=TRAINING_LANGUAGES, stats: CollectStats | None = None) -> list[dict]:
    """What ``collect`` would read, without reading it: one unit per file (``label``, ``path``, ``size``, ``mtime``)
    or per archive (read whole by one task), in ``collect``'s order. Files too large to read, symlink loops and
    unreadable entries are counted in ``stats`` here, as ``collect`` counts them."""
    wanted = {canonical_language(lang) for lang in languages}
    stats = stats if stats is not None else CollectStats()
    units = []
    for root in inputs:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"input {root} does not exist")
        if root.is_file() and root.name.lower().endswith(ARCHIVE_SUFFIXES):
            st = root.stat()
            units.append({"kind": "archive", "label": str(root), "path": str(root.resolve()), "size": st.st_size,
                          "mtime": st.st_mtime_ns})
            continue
        entries = [(str(root), root)] if root.is_file() else _walk_directory(root, stats)
        for label, path in entries:
            try:
                st = path.stat()
            except OSError as e:
                stats.skipped["symlink_loop" if e.errno == errno.ELOOP else "unreadable"] += 1
                continue
            if st.st_size > READ_LIMIT:
                hint = language_from_path(path)
                if hint in wanted:
                    stats.oversized[hint] += 1
                stats.skipped["too_large_to_read"] += 1
                continue
            units.append({"kind": "file", "label": label, "path": str(path), "size": st.st_size,
                          "mtime": st.st_mtime_ns})
    return units


def assign_tasks(units: list[dict], tasks: int) -> None:
    """Give each unit a ``task``: contiguous runs of the listing holding about the same bytes (the unit of load
    balance and of resume), the same for the same listing and task count."""
    total = sum(u["size"] for u in units) or 1
    done = 0
    for unit in units:
        unit["task"] = min(tasks - 1, done * tasks // total)
        done += unit["size"]
