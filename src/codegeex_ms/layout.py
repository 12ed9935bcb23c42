"""Names and shapes of every parameter of our CodeGeeX model, computed from a config without building it.

This is the single source of truth for the checkpoint layout: the model's Cells create exactly these names (a
test checks it) and build a layer's Linears from its table (``LAYER_MODULES``: name, shape, Megatron split, kernel
order), which resharding, quantization and the CPU decode kernel read too; the converters map the released
layouts onto these names, and the 13B parameter count (12,873,943,040) is computed from them without allocating
anything.

Linear weights are stored ``[out, in]`` as in the PyTorch release; LayerNorms have ``weight``/``bias``.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .config import ModelConfig

class Split(enum.Enum):
    """How a Linear's weight is split over ``model_parallel`` (Megatron): ``COLUMN`` splits the output features
    (weight rows and bias), ``ROW`` the input features (weight columns; its partial sums are all-reduced)."""
    COLUMN = "column"
    ROW = "row"


@dataclass(frozen=True)
class LayerNormSpec:
    module: str                 # its name inside a layer


@dataclass(frozen=True)
class LinearSpec:
    """One of a layer's six Linears. All six are quantized by int8 weight-only quantization (as the original
    CodeGeeX's) and are inputs of the CPU decode-layer kernel."""
    module: str                 # its name inside a layer
    out_features: str           # "hidden" or "ffn": which size of the config
    in_features: str
    split: Split
    gelu: bool = False          # the fast GELU follows it (the CPU kernels apply it in the same call)

    def shape(self, cfg: ModelConfig) -> tuple[int, int]:
        """The weight's shape, ``[out, in]`` (the PyTorch release's layout)."""
        size = {"hidden": cfg.hidden_size, "ffn": cfg.ffn_hidden_size}
        return size[self.out_features], size[self.in_features]


# One transformer layer's modules, in forward order, which is also the order of the checkpoint's names and of the
# CPU decode kernel's inputs for each layer (``kernels/decode_stack.cc``: each module's weight[, weight_scale], bias).
# The top query layer has the same modules.
LAYER_MODULES = (
    LayerNormSpec("input_layernorm"),
    LinearSpec("attention.query", "hidden", "hidden", Split.COLUMN),
    LinearSpec("attention.key", "hidden", "hidden", Split.COLUMN),
    LinearSpec("attention.value", "hidden", "hidden", Split.COLUMN),
    LinearSpec("attention.dense", "hidden", "hidden", Split.ROW),
    LayerNormSpec("post_attention_layernorm"),
    LinearSpec("mlp.dense_h_to_4h", "ffn", "hidden", Split.COLUMN, gelu=True),
    LinearSpec("mlp.dense_4h_to_h", "hidden", "ffn", Split.ROW),
)
LAYER_LINEARS = {spec.module: spec for spec in LAYER_MODULES if isinstance(spec, LinearSpec)}

# The 16 parameters of one transformer layer
LAYER_PARAMS = tuple(f"{spec.module}.{kind}" for spec in LAYER_MODULES for kind in ("weight", "bias"))


def layer_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for spec in LAYER_MODULES:
        weight = spec.shape(cfg) if isinstance(spec, LinearSpec) else (cfg.hidden_size,)
        shapes[f"{spec.module}.weight"], shapes[f"{spec.module}.bias"] = weight, weight[:1]
    return shapes


def layer_prefixes(cfg: ModelConfig) -> list[str]:
    """``layers.0`` ... ``layers.{n-1}``, then ``top_query_layer`` (forward order)."""
    return [f"layers.{i}" for i in range(cfg.num_layers)] + ["top_query_layer"]


# The tensor that embedding quantization replaces: the word embedding, which is also the output head's weight.
EMBEDDING = "word_embeddings.weight"


def module_in_layer(name: str) -> str:
    """``layers.3.mlp.dense_h_to_4h.weight`` -> ``mlp.dense_h_to_4h`` (also under ``top_query_layer.``);
    outside the layers, the module name as it is (``word_embeddings``)."""
    module = name.rsplit(".", 1)[0]
    if module.startswith("layers."):
        return module.split(".", 2)[-1]
    return module[len("top_query_layer."):] if module.startswith("top_query_layer.") else module


def is_quantized_weight(name: str) -> bool:
    """True for the weight of one of the six Linears of a layer (``layers.3.mlp.dense_h_to_4h.weight``)."""
    return name.endswith(".weight") and module_in_layer(name) in LAYER_LINEARS


def parameter_shapes(cfg: ModelConfig, weight_quant: str = "none",
                     embedding_quant: str = "none") -> dict[str, tuple[int, ...]]:
    """Our parameter name -> shape, in forward order. With ``weight_quant="int8"`` each quantized Linear weight
    (stored int8) is followed by its per-output-row ``weight_scale``; with ``embedding_quant="int8"`` the word
    embedding (stored int8) by its per-row ``word_embeddings.weight_scale``."""
    h = cfg.hidden_size
    shapes = {
        "word_embeddings.weight": (cfg.padded_vocab_size, h),
        "position_embeddings.weight": (cfg.max_position_embeddings, h),
        "top_query_embeddings.weight": (cfg.max_position_embeddings, h),
    }
    per_layer = layer_shapes(cfg)
    for prefix in layer_prefixes(cfg)[:-1]:
        shapes.update({f"{prefix}.{k}": v for k, v in per_layer.items()})
    shapes["final_layernorm.weight"] = (h,)
    shapes["final_layernorm.bias"] = (h,)
    shapes.update({f"top_query_layer.{k}": v for k, v in per_layer.items()})
    with_scales = {}
    for name, shape in shapes.items():
        with_scales[name] = shape
        if (weight_quant == "int8" and is_quantized_weight(name)) or (embedding_quant == "int8" and name == EMBEDDING):
            with_scales[name + "_scale"] = shape[:1]
    return with_scales


def count_parameters(cfg: ModelConfig) -> int:
    """Number of parameters, counted from the shapes (nothing is allocated)."""
    return sum(math.prod(s) for s in parameter_shapes(cfg).values())


def is_no_decay(name: str) -> bool:
    """LayerNorm parameters and biases get no weight decay (as the original CodeGeeX)."""
    return name.endswith(".bias") or "layernorm" in name
