"""Convert CodeGeeX checkpoints between the released layouts and ours.

    python -m codegeex_ms.convert codegeex_13b.pt  ckpt/codegeex-13b            # PyTorch release -> ours
    python -m codegeex_ms.convert code-13B.ckpt    ckpt/codegeex-13b            # original MindSpore -> ours
    python -m codegeex_ms.convert ckpt/codegeex-13b codegeex_13b.pt --to torch   # ours -> PyTorch release
    python -m codegeex_ms.convert ckpt/codegeex-13b code-13B.ckpt  --to mindspore

Sources (the two released layouts):
  torch      ``torch.load(f)["module"]["language_model"]`` nested dict (or a flat ``state_dict()``), with
             separate q/k/v or the fused ``query_key_value`` / top-layer ``key_value`` variant.
  mindspore  the original MindSpore names (``backbone.blocks.{i}.attention.dense1`` ...; ``projection``,
             ``output.mapping`` and ``output.projection`` weights stored transposed) as a ``.ckpt`` or a
             folder of ``{name}.npy`` dumps. Optimizer moments (``adam_m.*``, ``adam_v.*``) and training
             counters are skipped and reported.
  ours       a checkpoint folder (config.yaml + model.safetensors).

Conversion goes tensor by tensor into a streaming writer, so converting the 13B release holds the
(memory-mapped where possible) source plus one converted tensor, never two copies of the weights.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import WEIGHTS_FILE, CheckpointError, check_weights, read_config, write_folder
from .cli import ArgumentParser, refuse_existing
from .config import Config, resolve_config, shipped_configs, load_config
from .fileio import staged_folder
from .layout import LAYER_PARAMS, layer_prefixes, parameter_shapes
from .safetensors_io import SafetensorsReader

# Training state found next to the weights in original MindSpore checkpoints; not model parameters.
_TRAINING_STATE_PREFIXES = ("adam_m.", "adam_v.", "moments.", "accu_grads.")
_TRAINING_STATE_NAMES = {"global_step", "epoch_num", "step_num", "loss_scale", "scale_sense", "current_iterator_step",
                         "last_overflow_iterator_step", "learning_rate", "beta1_power", "beta2_power"}


class ConversionError(CheckpointError):
    """A source checkpoint is missing a parameter, has an unexpected one, or a shape does not match."""


# ---------------------------------------------------------------------------------------------------------
# Tensor sources: names, shapes and one tensor at a time.

class TensorSource:
    kind: str
    names: list[str]
    skipped: list[str]

    def shape(self, name: str) -> tuple[int, ...]:
        raise NotImplementedError

    def get(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def dtype(self, name: str) -> np.dtype:
        """The numpy dtype ``get(name)`` returns, without reading the tensor."""
        raise NotImplementedError


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


class TorchSource(TensorSource):
    """A PyTorch CodeGeeX file: nested released layout or a flat state_dict."""
    kind = "torch"

    def __init__(self, path: Path, trust_pickle: bool = False):
        try:
            import torch
        except ImportError:
            raise ConversionError("reading a PyTorch checkpoint needs torch: pip install torch") from None
        self._torch = torch
        obj = self._load(path, trust_pickle)
        if isinstance(obj, dict) and "module" in obj:
            obj = obj["module"]
        if isinstance(obj, dict) and "language_model" in obj:
            obj = obj["language_model"]
        if not isinstance(obj, dict):
            raise ConversionError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
        self.tensors = {}
        for name, value in _flatten(obj):
            name = name.removeprefix("module.").removeprefix("language_model.")
            if isinstance(value, torch.Tensor):
                self.tensors[name] = value
        self.names = list(self.tensors)
        self.skipped = []

    def _load(self, path: Path, trust_pickle: bool):
        torch = self._torch
        kwargs = dict(map_location="cpu", weights_only=not trust_pickle)
        try:
            return torch.load(path, mmap=True, **kwargs)       # zip format: tensors stay on disk until used
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e):
                raise ConversionError(f"{path}: cannot read: {e}") from None
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError subclasses and others
            if not trust_pickle and "weights_only" in str(e):
                raise ConversionError(f"{path} contains Python objects besides tensors; if you trust the file, "
                                      f"re-run with --trust-pickle") from None
            raise ConversionError(f"{path}: cannot read: {_first_line(e)}") from None
        try:
            return torch.load(path, **kwargs)                  # legacy format: read into memory
        except Exception as e:  # noqa: BLE001 - garbage raises UnpicklingError, EOFError, ValueError, ...
            if not trust_pickle and "Unsupported global" in str(e):
                raise ConversionError(f"{path} contains Python objects besides tensors; if you trust the file, "
                                      f"re-run with --trust-pickle") from None
            # torch's message is a paragraph; its "Unsupported ..." line says what was found
            detail = next((line.strip() for line in str(e).splitlines() if line.strip().startswith("Unsupported")),
                          _first_line(e))
            raise ConversionError(f"{path} is not a PyTorch checkpoint (torch.load: {type(e).__name__}: "
                                  f"{detail[:200]})") from None

    def shape(self, name):
        return tuple(self.tensors[name].shape)

    def get(self, name):
        t = self.tensors[name]
        if t.dtype == self._torch.bfloat16:
            t = t.float()
        return t.numpy()

    def dtype(self, name):
        t = self.tensors[name]
        if t.dtype == self._torch.bfloat16:
            return np.dtype(np.float32)
        return np.dtype(str(t.dtype).removeprefix("torch."))


class MindSporeSource(TensorSource):
    """Original MindSpore names, from a ``.ckpt`` file or a folder of ``{name}.npy`` dumps."""
    kind = "mindspore"

    def __init__(self, path: Path):
        if path.is_dir():
            arrays = {p.stem: p for p in sorted(path.glob("*.npy"))}
            if not arrays:
                raise ConversionError(f"{path}: no .npy files found")
            self._arrays = {name: np.load(p, mmap_mode="r") for name, p in arrays.items()}
        else:
            import mindspore as ms
            self._arrays = {name: p for name, p in ms.load_checkpoint(str(path)).items()}
        self.skipped = [n for n in self._arrays if n.startswith(_TRAINING_STATE_PREFIXES) or n in _TRAINING_STATE_NAMES]
        self._by_name = {}
        for name in self._arrays:
            if name not in self.skipped:
                short = name[name.index("backbone."):] if "backbone." in name else name
                self._by_name[short] = name
        self.names = list(self._by_name)

    def shape(self, name):
        return tuple(self._arrays[self._by_name[name]].shape)

    def get(self, name):
        value = self._arrays[self._by_name[name]]
        return np.asarray(value if isinstance(value, np.ndarray) else value.asnumpy())

    def dtype(self, name):
        value = self._arrays[self._by_name[name]]
        if isinstance(value, np.ndarray):
            return value.dtype
        return np.dtype(value.asnumpy().dtype)


class OursSource(TensorSource):
    kind = "ours"

    def __init__(self, path: Path):
        self.reader = SafetensorsReader(path / WEIGHTS_FILE)
        self.names = self.reader.names
        self.skipped = []

    def shape(self, name):
        return self.reader.shape(name)

    def get(self, name):
        return self.reader.get(name)

    def dtype(self, name):
        return self.reader.dtype(name)


def open_source(path: Path, kind: str = "auto", trust_pickle: bool = False) -> TensorSource:
    if not path.exists():
        raise ConversionError(f"{path} does not exist")
    if kind == "auto":
        if path.is_dir():
            kind = "ours" if (path / WEIGHTS_FILE).is_file() else "mindspore"
        elif path.suffix == ".ckpt":
            kind = "mindspore"
        elif path.suffix in (".pt", ".pth", ".bin"):
            kind = "torch"
        else:
            raise ConversionError(f"cannot tell the layout of {path} from its name; pass --from torch|mindspore")
    return {"torch": lambda: TorchSource(path, trust_pickle), "mindspore": lambda: MindSporeSource(path),
            "ours": lambda: OursSource(path)}[kind]()


# ---------------------------------------------------------------------------------------------------------
# Name maps: our parameter name -> where it comes from in a released layout.

@dataclass(frozen=True)
class Rule:
    source: str                   # name in the source layout
    transpose: bool = False       # stored [in, out] in the source
    rows: tuple[int, int] | None = None   # slice of dim 0 (fused q/k/v)

    def apply(self, array: np.ndarray) -> np.ndarray:
        if self.rows is not None:
            array = array[self.rows[0]:self.rows[1]]
        return array.T if self.transpose else array


def torch_name(name: str) -> str:
    """Our name -> the PyTorch release name (below ``module.language_model``), separate q/k/v."""
    if name.startswith(("word_embeddings.", "position_embeddings.")):
        return "embedding." + name
    if name.startswith("top_query_embeddings."):
        return "topQueryEmbedding." + name
    if name.startswith("top_query_layer."):
        return "transformer.topQueryLayer." + name.removeprefix("top_query_layer.")
    return "transformer." + name           # layers.{i}.* and final_layernorm.*


def torch_rules(cfg: Config, source_names=()) -> dict[str, Rule]:
    """Rules for the PyTorch release; understands the fused query_key_value / key_value variant."""
    h = cfg.model.hidden_size
    names = set(source_names)
    rules = {}
    for ours in parameter_shapes(cfg.model):
        name = torch_name(ours)
        match = re.fullmatch(r"transformer\.(layers\.\d+|topQueryLayer)\.attention\.(query|key|value)\.(weight|bias)",
                             name)
        if match and name not in names:
            block, which, kind = match.groups()
            fused_qkv = f"transformer.{block}.attention.query_key_value.{kind}"
            fused_kv = f"transformer.{block}.attention.key_value.{kind}"
            if fused_qkv in names:
                i = ("query", "key", "value").index(which)
                rules[ours] = Rule(fused_qkv, rows=(i * h, (i + 1) * h))
                continue
            if fused_kv in names and which != "query":
                i = ("key", "value").index(which)
                rules[ours] = Rule(fused_kv, rows=(i * h, (i + 1) * h))
                continue
        rules[ours] = Rule(name)
    return rules


_MS_LAYER = {
    "input_layernorm.weight": ("layernorm1.gamma", False), "input_layernorm.bias": ("layernorm1.beta", False),
    "attention.query.weight": ("attention.dense1.weight", False),
    "attention.query.bias": ("attention.dense1.bias", False),
    "attention.key.weight": ("attention.dense2.weight", False), "attention.key.bias": ("attention.dense2.bias", False),
    "attention.value.weight": ("attention.dense3.weight", False),
    "attention.value.bias": ("attention.dense3.bias", False),
    "attention.dense.weight": ("attention.projection.weight", True),
    "attention.dense.bias": ("attention.projection.bias", False),
    "post_attention_layernorm.weight": ("layernorm2.gamma", False),
    "post_attention_layernorm.bias": ("layernorm2.beta", False),
    "mlp.dense_h_to_4h.weight": ("output.mapping.weight", True),
    "mlp.dense_h_to_4h.bias": ("output.mapping.bias", False),
    "mlp.dense_4h_to_h.weight": ("output.projection.weight", True),
    "mlp.dense_4h_to_h.bias": ("output.projection.bias", False),
}
assert set(_MS_LAYER) == set(LAYER_PARAMS)


def mindspore_rules(cfg: Config, source_names=()) -> dict[str, Rule]:
    """Rules for the parameter names of the original MindSpore CodeGeeX checkpoints."""
    rules = {
        "word_embeddings.weight": Rule("backbone.embedding.word_embedding.embedding_table"),
        "position_embeddings.weight": Rule("backbone.embedding.position_embedding.embedding_table"),
        "top_query_embeddings.weight": Rule("backbone.top_query_embedding.embedding_table"),
        "final_layernorm.weight": Rule("backbone.layernorm.gamma"),
        "final_layernorm.bias": Rule("backbone.layernorm.beta"),
    }
    for prefix in layer_prefixes(cfg.model):
        ms_prefix = ("backbone.top_query_layer" if prefix == "top_query_layer"
                     else prefix.replace("layers.", "backbone.blocks."))
        for ours, (theirs, transpose) in _MS_LAYER.items():
            rules[f"{prefix}.{ours}"] = Rule(f"{ms_prefix}.{theirs}", transpose=transpose)
    return rules


def identity_rules(cfg: Config, source_names=()) -> dict[str, Rule]:
    return {name: Rule(name) for name in parameter_shapes(cfg.model)}


RULES = {"torch": torch_rules, "mindspore": mindspore_rules, "ours": identity_rules}


def _rows_shape(rule: Rule, shape):
    if rule.rows is not None:
        shape = (rule.rows[1] - rule.rows[0],) + tuple(shape[1:])
    return tuple(reversed(shape)) if rule.transpose else tuple(shape)


def check_mapping(source: TensorSource, cfg: Config) -> dict[str, Rule]:
    """The rules for ``source`` under ``cfg``; raises ConversionError naming every missing, unexpected or
    mis-shaped parameter."""
    rules = RULES[source.kind](cfg, source.names)
    names = set(source.names)
    problems = []
    missing = [r.source for r in rules.values() if r.source not in names]
    if missing:
        problems.append(f"missing {len(missing)} parameter(s): {', '.join(sorted(set(missing))[:6])}"
                        f"{' ...' if len(set(missing)) > 6 else ''}")
    used = {r.source for r in rules.values()}
    unexpected = sorted(names - used)
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} parameter(s): {', '.join(unexpected[:6])}"
                        f"{' ...' if len(unexpected) > 6 else ''}")
    for ours, shape in parameter_shapes(cfg.model).items():
        rule = rules[ours]
        if rule.source in names:
            found = _rows_shape(rule, source.shape(rule.source))
            if rule.rows is not None and source.shape(rule.source)[0] < rule.rows[1]:
                found = f"{source.shape(rule.source)} (too few rows to split)"
            if found != shape:
                problems.append(f"{rule.source} -> {ours}: expected shape {shape}, found {found}")
    if problems:
        raise ConversionError(f"{source.kind} checkpoint does not match the config: " + "; ".join(problems[:12]))
    return rules


def infer_config(source: TensorSource) -> tuple[str, Config]:
    """The first shipped config whose parameter shapes match the source."""
    errors = []
    for name, path in shipped_configs().items():
        cfg = load_config(path)
        try:
            check_mapping(source, cfg)
            return name, cfg
        except ConversionError as e:
            errors.append(f"  {name}: {str(e)[:200]}")
    raise ConversionError("no shipped config matches the source checkpoint; pass --config YAML.\n" + "\n".join(errors))


# ---------------------------------------------------------------------------------------------------------
# Writers.

def _cast(array: np.ndarray, dtype: str | None) -> np.ndarray:
    return array if dtype is None else array.astype(dtype, copy=False)


def to_ours(source: TensorSource, cfg: Config, out_dir: Path, dtype: str | None = None,
            tokenizer: str | None = None, progress=None) -> Path:
    """Write ``source`` as one of our checkpoint folders, one tensor at a time, into a temporary folder that then
    replaces ``out_dir`` as a whole (an interrupted conversion leaves no half-written folder)."""
    rules = check_mapping(source, cfg)
    shapes = parameter_shapes(cfg.model)
    specs = [(name, shape, np.dtype(dtype) if dtype else source.dtype(rules[name].source))
             for name, shape in shapes.items()]
    with staged_folder(out_dir) as tmp:
        write_folder(tmp, cfg, specs,
                     lambda name: np.ascontiguousarray(_cast(rules[name].apply(source.get(rules[name].source)), dtype)),
                     tokenizer=tokenizer, progress=progress)
    return Path(out_dir)


def _released_tree(flat: dict) -> dict:
    """Flat PyTorch release names -> the nested ``{"module": {"language_model": ...}}`` dict."""
    lm = {"embedding": {}, "topQueryEmbedding": {}, "transformer": {}}
    for name, tensor in flat.items():
        top, rest = name.split(".", 1)
        if top == "transformer":
            lm["transformer"][rest] = tensor
        else:
            module, param = rest.split(".", 1)
            lm[top].setdefault(module, {})[param] = tensor
    return {"module": {"language_model": lm}}


def from_ours(folder: Path, out: Path, layout: str, dtype: str | None = None, progress=None) -> Path:
    """Write one of our checkpoint folders in a released layout (``torch`` .pt or original ``mindspore`` .ckpt)."""
    cfg = read_config(folder)
    source = OursSource(folder)
    check_weights(source.reader, cfg)
    rules = RULES[layout](cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    if layout == "torch":
        import torch
        flat = {}
        for ours, rule in rules.items():
            flat[rule.source] = torch.from_numpy(np.ascontiguousarray(_cast(rule.apply(source.get(ours)), dtype)))
            if progress:
                progress(ours)
        torch.save(_released_tree(flat), tmp)
    elif layout == "mindspore":
        import mindspore as ms
        entries = []
        for ours, rule in rules.items():
            # The rule maps source -> ours; a transpose is its own inverse.
            entries.append({"name": rule.source,
                            "data": ms.Tensor(np.ascontiguousarray(_cast(rule.apply(source.get(ours)), dtype)))})
            if progress:
                progress(ours)
        ms.save_checkpoint(entries, str(tmp))
    else:
        raise ConversionError(f"unknown target layout {layout!r}")
    tmp.replace(out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Command line.

def parse_args(argv=None):
    p = ArgumentParser(
        prog="python -m codegeex_ms.convert",
        description="Convert CodeGeeX weights between the PyTorch release, the original MindSpore names and "
                    "this project's checkpoint folders (config.yaml + model.safetensors).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    p.add_argument("src", type=Path, help="source: a .pt/.pth file (PyTorch), a .ckpt file or folder of .npy "
                                          "files (original MindSpore), or one of our checkpoint folders")
    p.add_argument("out", type=Path, help="destination: a folder (--to ours), a .pt file (--to torch) or a .ckpt "
                                          "file (--to mindspore)")
    p.add_argument("--to", choices=("ours", "torch", "mindspore"), default="ours",
                   help="target layout (default: ours; torch/mindspore need one of our folders as source)")
    p.add_argument("--from", dest="src_kind", choices=("auto", "torch", "mindspore", "ours"), default="auto",
                   help="source layout (default: guessed from the file name)")
    p.add_argument("--config", help="model config YAML or shipped config name (default: the shipped config "
                                    "whose shapes match the source, e.g. codegeex_13b)")
    p.add_argument("--dtype", choices=("float32", "float16"), default=None,
                   help="store weights in this dtype (default: keep the source dtype; bfloat16 becomes float32)")
    p.add_argument("--tokenizer", help="tokenizer folder to record in the output checkpoint folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it exists (by default an existing output is refused, so that an earlier "
                        "conversion is never mixed with or lost to a new one)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a PyTorch file that holds Python objects besides tensors (only for trusted files)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from tqdm import tqdm
    args = parse_args(argv)
    if args.tokenizer:          # recorded as given, a relative path would be read against the output folder
        args.tokenizer = str(Path(args.tokenizer).resolve())
    refuse_existing(args.out, args.overwrite)
    start = time.time()
    source = open_source(args.src, args.src_kind, args.trust_pickle)
    if args.to != "ours":
        if source.kind != "ours":
            raise ConversionError(f"--to {args.to} needs one of our checkpoint folders as source; convert "
                                  f"{args.src} to ours first")
        cfg = read_config(args.src)
        with tqdm(total=len(source.names), desc=f"to {args.to}", unit="tensor") as bar:
            from_ours(args.src, args.out, args.to, args.dtype, progress=lambda _: bar.update())
    else:
        if args.config:
            cfg = resolve_config(args.config)
        elif source.kind == "ours":
            cfg = read_config(args.src)
        else:
            name, cfg = infer_config(source)
            print(f"config: {name} (shapes match)", file=sys.stderr)
        with tqdm(total=len(parameter_shapes(cfg.model)), desc="to ours", unit="tensor") as bar:
            to_ours(source, cfg, args.out, args.dtype, args.tokenizer, progress=lambda _: bar.update())
    from .layout import count_parameters
    skipped = f", skipped {len(source.skipped)} training-state entries" if source.skipped else ""
    print(f"converted {len(parameter_shapes(cfg.model))} tensors ({count_parameters(cfg.model):,} parameters) "
          f"from {source.kind} to {args.to}{skipped} in {time.time() - start:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    from .cli import run
    sys.exit(run(main))
