"""Self-describing checkpoint folders.

A folder holds everything needed to rebuild the model::

    config.yaml          the network the weights belong to (model + precision); a run's step checkpoints keep the
                         whole config (parallel layout, compiler switches, recipe)
    model.safetensors    weights under our exact parameter names (see layout.py)
    tokenizer.json       (optional) where the tokenizer lives: {"path": ...}

Weights are loaded by exact name, tensor by tensor from a memory map; a missing, unexpected or
mis-shaped tensor is an error that names it. (MindSpore's own loader strips name prefixes and does not
raise on missing keys even with ``strict_load`` in MindSpore 2.9.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, load_config
from .fileio import atomic_write_bytes, atomic_write_text
from .layout import parameter_shapes
from .run_folder import RunFolder
from .safetensors_io import SafetensorsReader, write_safetensors

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
OPTIMIZER_FILE = "optimizer.ckpt"      # run checkpoints (run_checkpoint.py) add the optimizer state
STATE_FILE = "state.json"              # and the step / data position
FORMAT = "codegeex-ms"


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[out, in]`` float -> (int8 ``[out, in]``, float32 scale ``[out]``), symmetric per-row absmax: the int8
    format of our checkpoints (``scale = max |row| / 127``, ``q = rint(row / scale)``, so ``|row - scale q| <=
    scale / 2`` elementwise, to float32 rounding)."""
    w = weight.astype(np.float32)
    absmax = np.abs(w).max(axis=1)
    scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


class CheckpointError(ValueError):
    """A checkpoint folder or file is missing, incomplete or does not match its config."""


def check_weights(reader: SafetensorsReader, cfg: Config) -> None:
    """Raise CheckpointError unless the file holds exactly the parameters of ``cfg`` with the right shapes."""
    expected = parameter_shapes(cfg.model, cfg.precision.weight_quant, cfg.precision.embedding_quant)
    missing = [n for n in expected if n not in reader.names]
    unexpected = [n for n in reader.names if n not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing parameter(s): "
                        f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected parameter(s): "
                        f"{', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    for name, shape in expected.items():
        if name in reader.names and reader.shape(name) != shape:
            problems.append(f"{name}: expected shape {shape}, found {reader.shape(name)}")
    if problems:
        raise CheckpointError(f"{reader.path} does not match its config: " + "; ".join(problems))


def write_folder(out_dir: str | os.PathLike, cfg: Config, shapes_dtypes: list[tuple[str, tuple, Any]],
                 fetch, tokenizer: str | None = None, progress=None, network_only: bool = True) -> Path:
    """Write a checkpoint folder from a tensor source (``fetch(name) -> np.ndarray``), one tensor at a time.
    ``network_only``: its config.yaml describes the network (model, precision) only; a run's step checkpoints
    keep the whole config (layout and recipe) for ``--resume`` and ``reshard``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expected = parameter_shapes(cfg.model, cfg.precision.weight_quant, cfg.precision.embedding_quant)
    names = [n for n, _, _ in shapes_dtypes]
    if sorted(names) != sorted(expected):
        raise CheckpointError(f"the tensors to write do not match the config's parameters: "
                              f"missing {sorted(set(expected) - set(names))[:8]}, "
                              f"unexpected {sorted(set(names) - set(expected))[:8]}")
    write_safetensors(out / WEIGHTS_FILE, shapes_dtypes, fetch, metadata={"format": FORMAT}, progress=progress)
    cfg.save(out / CONFIG_FILE, network_only=network_only)
    if tokenizer is not None:
        write_tokenizer_reference(out, tokenizer)
    return out


def write_random(out_dir: str | os.PathLike, cfg: Config, tokenizer: str | None = None, seed: int = 0,
                 progress=None) -> Path:
    """A random-weight checkpoint folder of ``cfg`` in the form its precision describes, one tensor at a time (so
    writing holds one tensor, whatever the model's size): int8 Linears (and word embedding) with float32 row
    scales where ``weight_quant``/``embedding_quant`` say int8, ``param_dtype`` for the rest; LayerNorms 1 and
    biases 0. For measuring memory and speed, which do not depend on the values. ``progress(name)`` after each."""
    from .layout import EMBEDDING, is_quantized_weight
    precision, float_dtype = cfg.precision, np.dtype(cfg.precision.param_dtype)
    specs = []
    for name, shape in parameter_shapes(cfg.model, precision.weight_quant, precision.embedding_quant).items():
        int8 = (precision.weight_quant == "int8" and is_quantized_weight(name)) or \
            (precision.embedding_quant == "int8" and name == EMBEDDING)
        specs.append((name, shape, np.int8 if int8 else np.float32 if name.endswith("_scale") else float_dtype))
    dtypes = {name: (shape, dtype) for name, shape, dtype in specs}
    rng = np.random.default_rng(seed)

    def fetch(name: str) -> np.ndarray:
        shape, dtype = dtypes[name]
        size = int(np.prod(shape))
        if dtype == np.int8:            # random bytes are the fast way to fill gigabytes; symmetric int8 has no -128
            return np.maximum(np.frombuffer(rng.bytes(size), np.int8), -127).reshape(shape)
        if name.endswith("_scale"):     # weights of about +-0.1, the size of a trained layer's largest ones
            return np.full(shape, 0.1 / 127, np.float32)
        if name.endswith("layernorm.weight"):
            return np.ones(shape, dtype)
        if name.endswith(".bias"):
            return np.zeros(shape, dtype)
        return (rng.standard_normal(shape, np.float32) * cfg.model.init_std).astype(dtype)

    return write_folder(out_dir, cfg, specs, fetch, tokenizer=tokenizer, progress=progress)


def save(model, out_dir: str | os.PathLike, tokenizer: str | None = None, network_only: bool = True) -> Path:
    """Save a CodeGeeX model (weights + its config) as a self-describing folder, atomically per file."""
    params = {p.name: p for p in model.get_parameters()}
    specs = [(name, tuple(p.shape), _numpy_dtype(p)) for name, p in params.items()]
    return write_folder(out_dir, model.config, specs, lambda name: params[name].asnumpy(), tokenizer,
                        network_only=network_only)


def _numpy_dtype(param) -> np.dtype:
    import mindspore as ms
    if param.dtype == ms.bfloat16:
        raise CheckpointError(f"{param.name}: bfloat16 weights cannot be saved as numpy safetensors; "
                              "cast the model to float32 or float16 first")
    dtypes = {ms.float32: np.float32, ms.float16: np.float16, ms.int8: np.int8, ms.int32: np.int32,
              ms.float64: np.float64}
    if param.dtype not in dtypes:
        raise CheckpointError(f"{param.name}: cannot save dtype {param.dtype}")
    return np.dtype(dtypes[param.dtype])


def check_folder(path: str | os.PathLike) -> Path:
    """``path`` as a checkpoint folder, or a CheckpointError that says what it is instead: missing, a file, or a
    training run folder (naming its latest checkpoint)."""
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a checkpoint folder")
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        steps = RunFolder(folder).checkpoints()
        if steps:
            raise CheckpointError(f"{folder} is a training run folder, not a checkpoint folder; its latest "
                                  f"checkpoint is {steps[-1]}")
        missing = CONFIG_FILE if not (folder / CONFIG_FILE).is_file() else WEIGHTS_FILE
        raise CheckpointError(f"{folder} is not a checkpoint folder: {missing} is missing")
    return folder


def read_config(path: str | os.PathLike) -> Config:
    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file() or RunFolder(folder).holds_checkpoints():
        check_folder(folder)
    return load_config(folder / CONFIG_FILE)


def write_tokenizer_reference(folder: str | os.PathLike, tokenizer: str | os.PathLike) -> None:
    """Record where the folder's tokenizer lives (``tokenizer.json``: ``{"path": ...}``)."""
    atomic_write_text(Path(folder) / TOKENIZER_FILE, json.dumps({"path": str(tokenizer)}, indent=2) + "\n")


def tokenizer_path(path: str | os.PathLike) -> str | None:
    """The tokenizer directory recorded in a checkpoint folder, if any (a relative path is inside the folder)."""
    if not (Path(path) / CONFIG_FILE).is_file() or RunFolder(path).holds_checkpoints():
        check_folder(path)                      # missing, a file, or a run folder: say which
    ref = Path(path) / TOKENIZER_FILE
    if not ref.is_file():
        return None
    recorded = json.loads(ref.read_text())["path"]
    return recorded if os.path.isabs(recorded) else str((Path(path) / recorded).resolve())


BUNDLED_TOKENIZER_DIR = "tokenizer"


def bundle_tokenizer(path: str | os.PathLike) -> Path:
    """Copy the recorded tokenizer's files into ``folder/tokenizer/`` and record that relative path, so that the
    folder is self-contained (it can be moved, shipped or cloned elsewhere)."""
    from .tokenizer import load
    folder = Path(path)
    source = tokenizer_path(folder)
    if source is None:
        raise CheckpointError(f"{folder} records no tokenizer to bundle")
    tok = load(source)
    target = folder / BUNDLED_TOKENIZER_DIR
    if Path(source).resolve() != target.resolve():
        target.mkdir(exist_ok=True)
        for name in tok.files:
            atomic_write_bytes(target / name, (Path(source) / name).read_bytes())
    atomic_write_text(folder / TOKENIZER_FILE, json.dumps({"path": BUNDLED_TOKENIZER_DIR,
                                                           "sha256": tok.identity()["sha256"]}, indent=2) + "\n")
    return target


def load_weights(model, path: str | os.PathLike) -> None:
    """Copy the weights of a checkpoint folder into ``model`` by exact name (casting to each parameter's dtype)."""
    import mindspore as ms
    folder = Path(path)
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{folder} is not a checkpoint folder: {WEIGHTS_FILE} is missing")
    reader = SafetensorsReader(folder / WEIGHTS_FILE)
    check_weights(reader, model.config)
    for param in model.get_parameters():
        value = reader.get(param.name)                 # a fresh array read from the file (not a memory map)
        if (value.dtype == np.int8) != (param.dtype == ms.int8):
            raise CheckpointError(f"{folder}: {param.name} is stored as {value.dtype} but the model expects "
                                  f"{param.dtype}")
        # the same dtype: the parameter takes the array's memory (no second copy); otherwise one cast copy
        same = ms.Tensor(np.zeros(0, value.dtype)).dtype == param.dtype
        param.set_data(ms.from_numpy(value) if same else ms.Tensor(value, dtype=param.dtype))


def load(path: str | os.PathLike, precision: dict | None = None, parallel: dict | None = None):
    """Build the model described by a checkpoint folder, load its weights and put it in inference mode.

    Args:
        path: the checkpoint folder.
        precision: optional overrides of the saved precision policy, e.g. ``{"compute_dtype": "float32"}``
            to run a checkpoint trained with fp16 compute on a CPU.
        parallel: optional overrides of the parallel layout.
    """
    from .model import CodeGeeX
    cfg = read_config(path)
    overrides = {k: v for k, v in (("precision", precision), ("parallel", parallel)) if v}
    if overrides:
        cfg = cfg.replace(**overrides)
    from mindspore.nn.utils import no_init_parameters
    with no_init_parameters():          # no random initial values: every parameter is filled from the file next
        model = CodeGeeX(cfg)
    load_weights(model, path)
    model.set_train(False)
    return model
