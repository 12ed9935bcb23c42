"""Model, precision, parallel, compiler and training configuration: small validated dataclasses loaded from YAML.

A YAML file in ``model_configs/`` has five sections that map 1:1 onto the dataclasses below::

    model:     {hidden_size: 5120, num_layers: 39, ...}   # the architecture (changes the function)
    precision: {param_dtype: float32, compute_dtype: float16, ...}
    parallel:  {data_parallel: 192, model_parallel: 8, ...}
    compile:   {graph_kernel: true, aoe_tune_mode: "", ...}  # Ascend/GPU compiler switches; optional
    train:     {lr: 1.0e-4, warmup_steps: 2000, ...}      # optional; defaults are the 13B recipe

A checkpoint folder's ``config.yaml`` holds only ``model`` and ``precision`` (the network the weights belong to);
the layout, compiler switches and recipe of a run live in the run folder's ``config.yaml`` (and in its step
checkpoints, which ``train.py --resume`` and ``reshard`` read). Older files with every section, or with the compiler
switches under ``parallel``, still load.

Unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .fileio import atomic_write_text

DTYPES = ("float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class ModelConfig:
    """The CodeGeeX architecture; the defaults are the released 13B model's.

    ``num_layers`` counts the ordinary pre-LN layers only; every CodeGeeX model has one more
    "top query layer" on top (the original MindSpore config counts 40 for the 13B model, we say 39 + 1).
    """
    hidden_size: int = 5120
    num_layers: int = 39
    num_heads: int = 40
    ffn_hidden_size: int = 20480
    vocab_size: int = 50400              # real tokens: 50,257 GPT-J BPE + 143 added
    padded_vocab_size: int = 52224       # embedding rows (the released checkpoint has 52,224)
    max_position_embeddings: int = 2048
    layernorm_epsilon: float = 1e-5
    hidden_dropout: float = 0.1          # embeddings and the two residual branches (training only)
    attention_dropout: float = 0.1       # attention probabilities (training only)
    init_std: float = 0.02               # normal init of fresh weights
    eod_token_id: int = 50256

    def __post_init__(self):
        for name in ("hidden_size", "num_layers", "num_heads", "ffn_hidden_size", "vocab_size",
                     "padded_vocab_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"model.hidden_size ({self.hidden_size}) must be divisible by "
                              f"model.num_heads ({self.num_heads})")
        if self.padded_vocab_size < self.vocab_size:
            raise ConfigError(f"model.padded_vocab_size ({self.padded_vocab_size}) is smaller than "
                              f"model.vocab_size ({self.vocab_size})")
        if not 0 <= self.eod_token_id < self.vocab_size:
            raise ConfigError(f"model.eod_token_id ({self.eod_token_id}) is not a token id below "
                              f"model.vocab_size ({self.vocab_size})")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.layernorm_epsilon < 1.0:
            raise ConfigError(f"model.layernorm_epsilon must be in (0, 1), got {self.layernorm_epsilon}")
        if self.init_std <= 0:
            raise ConfigError(f"model.init_std must be > 0, got {self.init_std}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class PrecisionConfig:
    """Which dtype each part of the network runs in.

    The released run kept fp32 master weights, ran matmuls in fp16 and LayerNorm/softmax in fp32.
    bfloat16 is an Ascend-only option: MindSpore has no bf16 CPU kernels for matmul, softmax or gather.
    """
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    softmax_dtype: str = "float32"
    layernorm_dtype: str = "float32"
    weight_quant: str = "none"            # "int8": the six Linear weights of every layer stored as int8 + row scales
    embedding_quant: str = "none"         # "int8": the word embedding (and so the tied head) as int8 + row scales
    # "int8": the int8 Linears also quantise their input, per row and symmetric, and multiply in integers (CPU
    # kernel with AVX-512 VNNI; approximate, as torch's quantize_dynamic; no faster than weight-only where decoding
    # streams the weights from memory: bench/README.md's decode table). A run-time choice: the weights are the same
    # as weight-only int8's. Needs weight_quant int8.
    activation_quant: str = "none"

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("weight_quant", "embedding_quant", "activation_quant"):
                if value not in ("none", "int8"):
                    raise ConfigError(f"precision.{f.name} must be none or int8, got {value!r}")
            elif value not in DTYPES:
                raise ConfigError(f"precision.{f.name} must be one of {', '.join(DTYPES)}, got {value!r}")
        if self.activation_quant == "int8" and self.weight_quant != "int8":
            raise ConfigError("precision.activation_quant = int8 needs precision.weight_quant = int8 (int8 "
                              "activations multiply int8 weights; make an int8 checkpoint with "
                              "`python -m codegeex_ms.quantize_export quantize`)")

    def check_device(self, device_target: str) -> None:
        """Raise if a dtype cannot run on ``device_target`` (bf16 only computes on Ascend)."""
        if device_target == "Ascend":
            return
        bf16 = [f"precision.{f.name}" for f in fields(self) if getattr(self, f.name) == "bfloat16"]
        if bf16:
            raise ConfigError(f"{', '.join(bf16)} = bfloat16 cannot run on {device_target}: MindSpore has no "
                              f"bfloat16 matmul/softmax/gather kernels there. Use float32 (or float16 compute).")


@dataclass(frozen=True)
class ParallelConfig:
    """How the model is laid out over devices (the 13B run: 8-way model x 192-way data parallel).

    Megatron-style tensor parallelism over ``model_parallel`` devices, data parallelism over
    ``data_parallel`` replicas, optional pipeline stages. In stand-alone mode (one CPU process)
    the shard strategies derived from this are attached but inert.
    """
    data_parallel: int = 1
    model_parallel: int = 1
    pipeline_stages: int = 1
    micro_batches: int = 1
    optimizer_shard: bool = False
    optimizer_shard_size: int = 0  # optimizer state sharded over groups of this many replicas (0: all); 13B: 16
    gradient_aggregation_group: int = 1  # gradient all-reduce fusion: this many layers per bucket; 13B: 4
    recompute: bool = False
    vocab_emb_dp: bool = True      # True: replicate the vocabulary; False: split its rows over model_parallel

    def __post_init__(self):
        for name in ("data_parallel", "model_parallel", "pipeline_stages", "micro_batches",
                     "gradient_aggregation_group"):
            if getattr(self, name) < 1:
                raise ConfigError(f"parallel.{name} must be >= 1, got {getattr(self, name)}")
        if self.optimizer_shard_size:
            if not self.optimizer_shard:
                raise ConfigError(f"parallel.optimizer_shard_size ({self.optimizer_shard_size}) needs "
                                  f"parallel.optimizer_shard: true")
            if self.optimizer_shard_size < 2 or self.data_parallel % self.optimizer_shard_size:
                raise ConfigError(f"parallel.optimizer_shard_size ({self.optimizer_shard_size}) must be >= 2 and "
                                  f"divide parallel.data_parallel ({self.data_parallel}), or 0 for all replicas")
        if self.pipeline_stages > 1 and self.micro_batches < self.pipeline_stages:
            raise ConfigError(f"parallel.micro_batches ({self.micro_batches}) must be >= "
                              f"parallel.pipeline_stages ({self.pipeline_stages}) to fill the pipeline")

    @property
    def device_num(self) -> int:
        return self.data_parallel * self.model_parallel * self.pipeline_stages

    def check(self, model: ModelConfig, device_num: int | None = None) -> None:
        """Validate the layout arithmetic against the model (and the device count, when known)."""
        dp, mp, pp = self.data_parallel, self.model_parallel, self.pipeline_stages
        if device_num is not None and dp * mp * pp != device_num:
            raise ConfigError(f"data_parallel ({dp}) x model_parallel ({mp}) x pipeline_stages ({pp}) = "
                              f"{dp * mp * pp}, but {device_num} devices are available")
        for name, size in (("num_heads", model.num_heads), ("hidden_size", model.hidden_size),
                           ("ffn_hidden_size", model.ffn_hidden_size)):
            if size % mp:
                raise ConfigError(f"model.{name} ({size}) is not divisible by parallel.model_parallel ({mp})")
        if not self.vocab_emb_dp and model.padded_vocab_size % mp:
            raise ConfigError(f"model.padded_vocab_size ({model.padded_vocab_size}) is not divisible by "
                              f"parallel.model_parallel ({mp}); needed when vocab_emb_dp is false")
        if model.num_layers + 1 < pp:      # stages may differ by one layer (model.CodeGeeX assigns them)
            raise ConfigError(f"{model.num_layers} layers + 1 top query layer = {model.num_layers + 1} is fewer "
                              f"than parallel.pipeline_stages ({pp}): every stage needs a layer")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; the defaults are the released 13B run's.

    lr(t) = lr * t / warmup_steps during warm-up, then
    min_lr + (lr - min_lr) * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2 (the cosine counts from step 0).
    """
    seq_len: int = 2048
    micro_batch_size: int = 16            # per data-parallel rank
    grad_accumulation: int = 1
    max_steps: int = 213000
    lr: float = 1e-4
    min_lr: float = 1e-6
    warmup_steps: int = 2000
    decay_steps: int = 200000
    weight_decay: float = 0.1             # not on LayerNorm parameters and biases
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0                # global norm
    loss_scale: float = 4294967296.0      # initial dynamic loss scale (2^32); 0 = no loss scaling
    loss_scale_factor: int = 2            # MindSpore's DynamicLossScaler takes an integer factor
    loss_scale_window: int = 1000
    eod_reset: bool = True                # reset attention and positions after each EOD (packed samples)
    seed: int = 1
    log_every: int = 10
    eval_every: int = 1000
    eval_batches: int = 20
    save_every: int = 250
    keep_checkpoints: int = 2
    peak_flops: float = 0.0               # device peak FLOP/s for MFU; 0 = measure a matmul at start

    def __post_init__(self):
        for name in ("seq_len", "micro_batch_size", "grad_accumulation", "max_steps", "log_every", "eval_every",
                     "save_every", "keep_checkpoints", "loss_scale_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_batches"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.decay_steps < 1:
            raise ConfigError(f"train.decay_steps must be >= 1, got {self.decay_steps}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not 0 < self.min_lr <= self.lr:
            raise ConfigError(f"train.min_lr ({self.min_lr}) must be in (0, train.lr ({self.lr})]")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"train.beta1/beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.loss_scale < 0:
            raise ConfigError(f"train.loss_scale must be >= 0 (0: off), got {self.loss_scale}")
        if self.loss_scale_factor < 2:
            raise ConfigError(f"train.loss_scale_factor must be an integer >= 2, got {self.loss_scale_factor}")
        if self.weight_decay < 0 or self.grad_clip <= 0 or self.eps <= 0:
            raise ConfigError("train.weight_decay must be >= 0, train.grad_clip and train.eps > 0")


@dataclass(frozen=True)
class CompileConfig:
    """Ascend/GPU compiler switches (inert on CPU): graph-kernel fusion and AOE operator auto-tuning."""
    graph_kernel: bool = False
    graph_kernel_flags: str = ""   # e.g. "--opt_level=2"
    aoe_tune_mode: str = ""        # "" (off), "online" or "offline" (Ascend)

    def __post_init__(self):
        if self.aoe_tune_mode not in ("", "online", "offline"):
            raise ConfigError(f"compile.aoe_tune_mode must be '', 'online' or 'offline', got {self.aoe_tune_mode!r}")


@dataclass(frozen=True)
class Config:
    """Everything needed to build and train a model: architecture, precision, parallel layout, compiler switches,
    recipe."""
    model: ModelConfig = field(default_factory=ModelConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    compile: CompileConfig = field(default_factory=CompileConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        self.parallel.check(self.model)
        if self.train.seq_len > self.model.max_position_embeddings:
            raise ConfigError(f"train.seq_len ({self.train.seq_len}) exceeds model.max_position_embeddings "
                              f"({self.model.max_position_embeddings})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some fields changed, e.g. ``cfg.replace(model={"hidden_dropout": 0.0})``: the one way to
        override (``apply_overrides`` parses ``section.key=value`` strings into this). An error names the field."""
        merged = self.to_dict()
        for section, values in sections.items():
            if section not in merged:
                raise ConfigError(f"unknown config section {section!r}; known: {', '.join(merged)}")
            merged[section].update(values)
        return config_from_dict(merged, source="")

    def save(self, path: str | os.PathLike, network_only: bool = False) -> None:
        """Write the config as YAML atomically; ``network_only``: only the sections that describe the network
        (model, precision), as a checkpoint folder keeps them."""
        data = self.to_dict()
        if network_only:
            data = {name: data[name] for name in NETWORK_SECTIONS}
        atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


_SECTIONS = {"model": ModelConfig, "precision": PrecisionConfig, "parallel": ParallelConfig,
             "compile": CompileConfig, "train": TrainConfig}
NETWORK_SECTIONS = ("model", "precision")
# compiler switches that older files kept under parallel
_MOVED_TO_COMPILE = ("graph_kernel", "graph_kernel_flags", "aoe_tune_mode")


def _check_type(value: Any, expected: type, where: str) -> Any:
    """``value`` as the field's type (``expected``, from ``typing.get_type_hints``), or a ConfigError naming it."""
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif expected is int:
        if isinstance(value, float) and value.is_integer():     # "2.0" in YAML: older files wrote some ints so
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif expected is float:
        if isinstance(value, str):          # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
    elif expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _migrate(data: dict) -> dict:
    """Older layouts read as the current one: compiler switches under ``parallel`` move to ``compile``; a file
    without a ``train`` section (a checkpoint folder's) gets a training length its model can hold."""
    data = dict(data)
    parallel = data.get("parallel")
    if isinstance(parallel, dict) and any(k in parallel for k in _MOVED_TO_COMPILE):
        compile_ = dict(data.get("compile") or {})
        for key in _MOVED_TO_COMPILE:
            if key in parallel:
                compile_.setdefault(key, parallel[key])
        data["parallel"] = {k: v for k, v in parallel.items() if k not in _MOVED_TO_COMPILE}
        data["compile"] = compile_
    model = data.get("model")
    if "train" not in data and isinstance(model, dict) and isinstance(model.get("max_position_embeddings"), int):
        data["train"] = {"seq_len": min(TrainConfig.seq_len, model["max_position_embeddings"])}
    return data


def config_from_dict(data: Any, source: str = "<dict>") -> Config:
    """Build a validated Config from nested dicts; errors name ``source`` (if not empty) and the offending key."""
    try:
        return _config_from_dict(data, source or "\0")
    except ConfigError as e:
        if source:
            raise
        raise ConfigError(str(e).replace("\0: ", "").replace("\0", "")) from None


def _config_from_dict(data: Any, source: str) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {', '.join(_SECTIONS)}, got "
                          f"{type(data).__name__}")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}; known: {', '.join(_SECTIONS)}")
    data = _migrate(data)
    sections = {}
    for name, cls in _SECTIONS.items():
        values = data.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping, got {type(values).__name__}")
        known = {f.name: f for f in fields(cls)}
        bad = sorted(set(values) - set(known))
        if bad:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(f'{name}.{k}' for k in bad)}; "
                              f"known keys of {name}: {', '.join(known)}")
        types = get_type_hints(cls)
        kwargs = {k: _check_type(v, types[k], f"{source}: {name}.{k}") for k, v in values.items()}
        try:
            sections[name] = cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    try:
        return Config(**sections)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(path: str | os.PathLike) -> Config:
    """Load and validate a YAML config file (see the module docstring for its layout)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return config_from_dict(data, source=str(path))


def config_dir() -> Path:
    """The folder of shipped configs: ``model_configs/`` in a source checkout, else the installed copy."""
    checkout = Path(__file__).resolve().parents[2] / "model_configs"
    if checkout.is_dir():
        return checkout
    import sys
    return Path(sys.prefix) / "share" / "codegeex-ms" / "model_configs"


def shipped_configs() -> dict[str, Path]:
    """Name (file stem) -> path of every YAML in ``config_dir()``."""
    return {p.stem: p for p in sorted(config_dir().glob("*.yaml"))}


def resolve_config(name_or_path: str | os.PathLike) -> Config:
    """Load a config given a path or the name of a shipped config (``codegeex_13b``)."""
    path = Path(name_or_path)
    if path.exists():
        return load_config(path)
    shipped = shipped_configs()
    if str(name_or_path) in shipped:
        return load_config(shipped[str(name_or_path)])
    raise ConfigError(f"config {name_or_path} is neither a file nor a shipped config "
                      f"({', '.join(shipped) or 'none found in ' + str(config_dir())})")


def apply_overrides(cfg: Config, overrides: list[str], source: str = "--set") -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML), e.g. ``train.lr=3e-4``."""
    sections: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"{source} {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        sections.setdefault(section, {})[name] = yaml.safe_load(raw)
    try:
        return cfg.replace(**sections)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
