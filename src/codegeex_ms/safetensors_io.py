"""Streaming safetensors writer and a lazy reader.

The writer takes the header (names, shapes, dtypes) up front and then pulls one tensor at a time, so a
13B conversion holds the source plus a single converted tensor, never two full copies of the weights.
Files are written to a temporary name and renamed when complete. The reader checks the file with
``safetensors.safe_open`` and then reads one tensor at a time with plain reads into a fresh array, so loading holds
the weights once: reading through a memory map would also keep every page of the file resident in the process (a
second copy of the weights in its RSS while they are copied into the model).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from safetensors import safe_open

_DTYPE_CODES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
                np.dtype(np.int8): "I8", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64",
                np.dtype(np.uint8): "U8"}


def write_safetensors(path: str | os.PathLike, specs: Iterable[tuple[str, tuple[int, ...], np.dtype]],
                      fetch: Callable[[str], np.ndarray], metadata: dict[str, str] | None = None,
                      progress: Callable[[str], None] | None = None) -> None:
    """Write tensors ``fetch(name)`` for each ``(name, shape, dtype)`` in ``specs``, atomically.

    Raises ValueError if a fetched tensor's shape or dtype differs from its spec.
    """
    specs = [(name, tuple(int(d) for d in shape), np.dtype(dtype)) for name, shape, dtype in specs]
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, shape, dtype in specs:
        if dtype not in _DTYPE_CODES:
            raise ValueError(f"{name}: dtype {dtype} cannot be stored in safetensors by this writer")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": _DTYPE_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)                     # the data starts 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name, shape, dtype in specs:
            array = np.asarray(fetch(name))
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"{name}: expected shape {shape} {dtype}, got {array.shape} {array.dtype}")
            f.write(np.ascontiguousarray(array).tobytes())
            if progress:
                progress(name)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SafetensorsFileError(ValueError):
    """A safetensors file is missing, truncated or corrupt."""


class SafetensorsReader:
    """Lazy, memory-mapped access to a safetensors file: ``names``, ``shape(name)``, ``get(name)``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._file = safe_open(str(self.path), framework="numpy")
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types (SafetensorError) and OSError
            raise SafetensorsFileError(f"{self.path} is not a readable safetensors file ({type(e).__name__}: "
                                       f"{str(e)[:200]}): it is truncated or corrupt; write it again") from None
        self.names = list(self._file.keys())
        self.metadata = self._file.metadata() or {}
        with open(self.path, "rb") as f:       # safe_open has validated the header and the data length
            header_len = int.from_bytes(f.read(8), "little")
            self._header = json.loads(f.read(header_len))
        self._data_start = 8 + header_len

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._file.get_slice(name).get_shape())

    def dtype(self, name: str) -> np.dtype:
        code = self._file.get_slice(name).get_dtype()
        return {v: k for k, v in _DTYPE_CODES.items()}[code]

    def get(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a new array that owns its memory (read from the file, not mapped)."""
        entry = self._header.get(name)
        if entry is None:
            raise KeyError(f"{self.path}: no tensor named {name}")
        codes = {v: k for k, v in _DTYPE_CODES.items()}
        if entry["dtype"] not in codes:
            raise SafetensorsFileError(f"{self.path}: tensor {name} has dtype {entry['dtype']}, which this reader "
                                       f"does not handle ({', '.join(sorted(codes))})")
        begin, end = entry["data_offsets"]
        out = np.empty(tuple(entry["shape"]), codes[entry["dtype"]])
        if out.nbytes != end - begin:
            raise SafetensorsFileError(f"{self.path}: tensor {name} has {end - begin} bytes for shape "
                                       f"{tuple(entry['shape'])} {entry['dtype']}: the file is corrupt")
        view = memoryview(out.reshape(-1).view(np.uint8))
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            done = 0
            while done < out.nbytes:
                n = f.readinto(view[done:])
                if not n:
                    raise SafetensorsFileError(f"{self.path}: tensor {name} cannot be read: the file ends "
                                               f"{out.nbytes - done} bytes early (truncated)")
                done += n
        return out
