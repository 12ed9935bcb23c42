"""Names and shapes of every parameter of our CodeGeeX model, computed from a config without building it.

This is the single source of truth for the checkpoint layout: the model's Cells create exactly these
names (a test checks it), the converters map the released layouts onto them, and the 13B parameter
count (12,873,943,040) is computed from them without allocating anything.

Linear weights are stored ``[out, in]`` as in the PyTorch release; LayerNorms have ``weight``/``bias``.
"""
from __future__ import annotations

import math

from .config import ModelConfig

# The 16 parameters of one transformer layer (the top query layer has the same ones).
LAYER_PARAMS = (
    "input_layernorm.weight", "input_layernorm.bias",
    "attention.query.weight", "attention.query.bias",
    "attention.key.weight", "attention.key.bias",
    "attention.value.weight", "attention.value.bias",
    "attention.dense.weight", "attention.dense.bias",
    "post_attention_layernorm.weight", "post_attention_layernorm.bias",
    "mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias",
    "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias",
)


def layer_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    h, f = cfg.hidden_size, cfg.ffn_hidden_size
    shapes = {}
    for name in LAYER_PARAMS:
        module, kind = name.rsplit(".", 1)
        if module.endswith("layernorm"):
            shapes[name] = (h,)
        elif module == "mlp.dense_h_to_4h":
            shapes[name] = (f, h) if kind == "weight" else (f,)
        elif module == "mlp.dense_4h_to_h":
            shapes[name] = (h, f) if kind == "weight" else (h,)
        else:  # attention.{query,key,value,dense}
            shapes[name] = (h, h) if kind == "weight" else (h,)
    return shapes


def layer_prefixes(cfg: ModelConfig) -> list[str]:
    """``layers.0`` ... ``layers.{n-1}``, then ``top_query_layer`` (forward order)."""
    return [f"layers.{i}" for i in range(cfg.num_layers)] + ["top_query_layer"]


# The Linear weights that int8 weight-only quantization replaces (as the original CodeGeeX).
QUANTIZED_LINEARS = ("attention.query", "attention.key", "attention.value", "attention.dense",
                     "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")


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
    return name.endswith(".weight") and module_in_layer(name) in QUANTIZED_LINEARS


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
