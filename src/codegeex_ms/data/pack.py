"""Token documents -> fixed windows of ``seq_len + 1`` ids, MindRecord shards, and reading them back.

``pack``: documents (each ending in EOD) are concatenated and cut into windows that overlap by one token
(window i's last id is window i+1's first input), the tail padded with EOD; training resets attention and
positions at every EOD. ``pad``: one document per window, right-padded with EOD; a longer document is cut
into windows every ``stride`` tokens, the last one aligned to its end (the original's sliding window).
Positions whose *input* is EOD do not count in the loss, so padding costs compute but not correctness.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}}
COLUMN = "input_ids"


def pack(documents: list[list[int]], seq_len: int, eod: int) -> np.ndarray:
    return PackedWindows(np.fromiter((t for doc in documents for t in doc), dtype=np.int32), seq_len, eod)[:]


class PackedWindows:
    """``pack``'s windows over documents already concatenated into one int32 stream (an array or a memory map of a
    token file), built a slice at a time: ``windows[a:b]`` holds rows a..b-1, so writing a shard holds one slice of
    rows, whatever the stream's size. ``len`` and ``shape`` as an array's."""

    def __init__(self, stream: np.ndarray, seq_len: int, eod: int):
        self.stream, self.seq_len, self.eod = stream, seq_len, eod
        self.count = 0 if stream.size == 0 else max(1, -(-(stream.size - 1) // seq_len))
        self.shape = (self.count, seq_len + 1)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, step = rows.indices(self.count)
        if step != 1:
            raise ValueError("PackedWindows takes contiguous slices of rows")
        stop = max(start, stop)
        lo, hi = start * self.seq_len, stop * self.seq_len + 1      # rows start..stop-1 overlap by one token
        part = np.full(hi - lo if stop > start else self.seq_len + 1, self.eod, np.int32)
        chunk = np.asarray(self.stream[lo:min(hi, self.stream.size)], np.int32)
        part[:chunk.size] = chunk
        return np.lib.stride_tricks.sliding_window_view(part, self.seq_len + 1)[::self.seq_len][:stop - start]


def pad(documents: list[list[int]], seq_len: int, eod: int, stride: int = 200) -> np.ndarray:
    width = seq_len + 1
    rows = []
    for doc in documents:
        doc = np.asarray(doc, np.int32)
        if doc.size <= width:
            row = np.full(width, eod, np.int32)
            row[:doc.size] = doc
            rows.append(row)
            continue
        starts = list(range(0, doc.size - width + 1, stride))
        if starts[-1] != doc.size - width:
            starts.append(doc.size - width)
        rows.extend(doc[s:s + width] for s in starts)
    return np.stack(rows) if rows else np.zeros((0, width), np.int32)


def write_shard(path: Path, samples) -> None:
    """Write one MindRecord file (+ its .db index) atomically: built in a temporary folder, then renamed.
    ``samples``: an array [rows, width], or anything with ``len``, ``shape`` and row slices (``PackedWindows``)."""
    from mindspore.mindrecord import FileWriter
    tmp = path.parent / f".tmp-{path.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = FileWriter(str(tmp / path.name), shard_num=1, overwrite=True)
    # MindRecord's defaults (a 16 MB header, 32 MB pages) made a 65-sample shard 50 MB; 1 MB each still holds any
    # sample (2049 ids are 8 KB) and thousands of pages. The same sizes for every shard: MindDataset refuses to
    # read shards whose header or page sizes differ.
    writer.set_header_size(1 << 20)
    writer.set_page_size(1 << 20)
    writer.add_schema({COLUMN: {"type": "int32", "shape": [samples.shape[1]]}}, "codegeex tokens")
    for start in range(0, len(samples), 1000):
        writer.write_raw_data([{COLUMN: row} for row in samples[start:start + 1000]])
    writer.commit()
    os.replace(tmp / (path.name + ".db"), path.parent / (path.name + ".db"))
    os.replace(tmp / path.name, path)             # the data file last: its presence marks a complete shard
    shutil.rmtree(tmp)


def shard_files(directory: str | os.PathLike, split: str) -> list[str]:
    files = sorted(str(p) for p in Path(directory).glob(f"{split}-*.mindrecord"))
    if not files:
        raise FileNotFoundError(f"no {split}-*.mindrecord shards in {directory}")
    return files


def open_dataset(directory: str | os.PathLike, split: str = "train", num_shards: int | None = None,
                 shard_id: int | None = None, shuffle: bool = False):
    """A ``MindDataset`` over the shards of one split; ``num_shards``/``shard_id`` for data parallel."""
    import mindspore.dataset as ds
    return ds.MindDataset(shard_files(directory, split), columns_list=[COLUMN], shuffle=shuffle,
                          num_shards=num_shards, shard_id=shard_id)
