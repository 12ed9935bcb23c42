"""The CodeGeeX network in MindSpore: reads top to bottom, one Cell per concept.

    ids [b, s] ──word emb──┐
    pos [b, s] ──pos emb───┴─+─> 39 x TransformerLayer (pre-LN) ─> final LayerNorm
                                                                        │ keys/values
    pos [b, s] ──top-query emb (queries)──────────────────> TopQueryLayer ─> x @ word_embᵀ ─> logits [b, s, V]

Everything here matches the released CodeGeeX-13B (its PyTorch code and checkpoints): separate q/k/v/out projections
with biases, fast GELU, LayerNorm eps 1e-5, learned absolute positions, a top query layer whose queries come
from a second learned position table, no LayerNorm after it, logits tied to the word embedding.

On a CPU with the C++ kernels (``codegeex_ms.kernels``) int8 Linears read their int8 weights directly, and a decode
step may run the whole transformer stack as one operator (``generation.FusedDecodeStep`` over each layer's
``TransformerLayer.decode_parameters``): the same maths, to float32 rounding.

Each Cell declares its ops and their ``.shard()`` strategies in ``__init__`` from one ParallelConfig
(Megatron layout: q/k/v and MLP-in column-parallel, out-proj and MLP-out row-parallel, vocabulary-parallel
embedding and head unless ``vocab_emb_dp``). In stand-alone mode (one CPU process) they are inert.
"""
from __future__ import annotations

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, One, Zero, initializer

from .config import Config, ConfigError
from .layout import LAYER_LINEARS, LAYER_MODULES, LinearSpec, Split

MS_DTYPES = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16}
MASK_VALUE = -10000.0   # the original adds -10000 (not -inf) to blocked scores, so padded rows stay finite


def cast(x, dtype):
    """``x`` in ``dtype``; no Cast op when it already is (dtypes are compile-time constants in graph mode)."""
    return x if x.dtype == dtype else x.astype(dtype)


class Dropout(nn.Cell):
    """Dropout that is the identity at inference (``set_train(False)``) and when the rate is 0."""

    def __init__(self, rate: float, strategy: tuple):
        super().__init__()
        self.rate = rate
        self.dropout = ops.Dropout(keep_prob=1.0 - rate).shard((strategy,)) if rate > 0 else None

    def construct(self, x):
        if self.training and self.dropout is not None:
            x, _ = self.dropout(x)
        return x


class LayerNorm(nn.Cell):
    """LayerNorm over the last axis, computed in ``precision.layernorm_dtype``; output in the compute dtype."""

    def __init__(self, cfg: Config):
        super().__init__()
        h, dp = cfg.model.hidden_size, cfg.parallel.data_parallel
        self.weight = Parameter(initializer(One(), (h,), MS_DTYPES[cfg.precision.param_dtype]), name="weight")
        self.bias = Parameter(initializer(Zero(), (h,), MS_DTYPES[cfg.precision.param_dtype]), name="bias")
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1,
                                  epsilon=cfg.model.layernorm_epsilon).shard(((dp, 1, 1), (1,), (1,)))
        self.norm_dtype = MS_DTYPES[cfg.precision.layernorm_dtype]
        self.compute_dtype = MS_DTYPES[cfg.precision.compute_dtype]

    def construct(self, x):
        y, _, _ = self.norm(cast(x, self.norm_dtype), cast(self.weight, self.norm_dtype),
                            cast(self.bias, self.norm_dtype))
        return cast(y, self.compute_dtype)


class Linear(nn.Cell):
    """``y = x @ Wᵀ + b`` with W stored ``[out, in]`` (the PyTorch release's layout), one of a layer's Linears as
    ``layout.LAYER_MODULES`` describes it (``spec``: its shape, and its Megatron split: ``Split.COLUMN`` splits the
    output features over model_parallel, ``Split.ROW`` the input features, whose partial sums the framework
    all-reduces).
    With ``precision.weight_quant = "int8"`` W is int8 with a per-output-row scale (weight-only int8, as the
    original's quantization); on CPU with float32 compute a C++ kernel (``codegeex_ms.kernels``) reads the int8 rows
    and dequantises them in registers; elsewhere the int8 matrix is cast to the compute dtype (a full-size
    temporary) and the row scale is applied to the matmul's output. Both equal ``x @ (W_int8 * scale)ᵀ``. The kernel
    also adds the bias and, for a Linear the fast GELU follows (``spec.gelu``), applies it (``applies_gelu`` tells
    the caller): each op folded in is one launch fewer of MindSpore's CPU runtime per decode step and layer. With
    ``precision.activation_quant = "int8"`` the kernel quantises x per row too and multiplies in integers (AVX-512
    VNNI): no longer exact. On Ascend with float16/bfloat16 compute MindSpore's ``WeightQuantBatchMatmul`` (int8
    weight, per-output-channel antiquant scale, bias fused) reads the int8 weight directly; one device only (its
    strategy is not given, so a model-parallel int8 layout is refused).
    """

    def __init__(self, spec: LinearSpec, cfg: Config):
        super().__init__()
        pdtype = MS_DTYPES[cfg.precision.param_dtype]
        out_features, in_features = spec.shape(cfg.model)
        self.in_features, self.out_features = in_features, out_features
        self.quantized = quantized = cfg.precision.weight_quant == "int8"
        if quantized:
            self.weight = Parameter(initializer(Zero(), (out_features, in_features), ms.int8), name="weight",
                                    requires_grad=False)
            self.weight_scale = Parameter(initializer(One(), (out_features,), ms.float32), name="weight_scale",
                                          requires_grad=False)
        else:
            self.weight = Parameter(initializer(Normal(cfg.model.init_std), (out_features, in_features), pdtype),
                                    name="weight")
        self.bias = Parameter(initializer(Zero(), (out_features,), pdtype), name="bias")
        self.compute_dtype = MS_DTYPES[cfg.precision.compute_dtype]
        dp, mp = cfg.parallel.data_parallel, cfg.parallel.model_parallel
        self.int8_kernel = None
        if quantized and cfg.precision.compute_dtype == "float32":
            from . import kernels
            if kernels.enabled():
                self.int8_kernel = kernels.quantized_linear_op(cfg.precision.activation_quant == "int8", spec.gelu)
        # with the kernel the bias (and the fast GELU that follows) are applied inside it: fewer ops per decode step
        self.applies_gelu = self.int8_kernel is not None and spec.gelu
        self.ascend_int8 = ascend_int8_matmul(cfg) if quantized else None
        self.matmul = ops.MatMul(transpose_b=True)
        self.add_bias = ops.Add()
        if spec.split is Split.COLUMN:
            self.matmul.shard(((dp, 1), (mp, 1)))
            self.add_bias.shard(((dp, mp), (mp,)))
        else:
            self.matmul.shard(((dp, mp), (1, mp)))
            self.add_bias.shard(((dp, 1), (1,)))

    def kernel_parameters(self) -> list:
        """``[weight, weight_scale, bias]`` (int8) or ``[weight, bias]``: this Linear's inputs to the decode-layer
        kernel."""
        return [self.weight, self.weight_scale, self.bias] if self.quantized else [self.weight, self.bias]

    def construct(self, x):
        shape = x.shape
        x = x.reshape(-1, self.in_features)                                       # [b*s, in]
        if self.int8_kernel is not None:
            y = self.int8_kernel(cast(x, ms.float32), self.weight, self.weight_scale,
                                 cast(self.bias, ms.float32))                                # [b*s, out]
        elif self.ascend_int8 is not None:
            # MindSpore's infer wants the antiquant scale and the bias in x's dtype
            y = self.ascend_int8(cast(x, self.compute_dtype), self.weight,
                                 cast(self.weight_scale, self.compute_dtype), None, None, None,
                                 cast(self.bias, self.compute_dtype))                         # [b*s, out]
        else:
            y = self.matmul(cast(x, self.compute_dtype), cast(self.weight, self.compute_dtype))
            if self.quantized:
                y = y * cast(self.weight_scale, self.compute_dtype)               # per output row
            y = self.add_bias(y, cast(self.bias, self.compute_dtype))            # [b*s, out]
        return y.reshape(shape[:-1] + (self.out_features,))


def ascend_int8_matmul(cfg: Config):
    """MindSpore's Ascend weight-only int8 matmul (``WeightQuantBatchMatmul``, weight ``[out, in]`` transposed), when
    the model is built for Ascend with float16/bfloat16 compute; else None (the CPU kernel or cast-then-matmul).
    Raises ConfigError for a model-parallel layout: the op is used on one device."""
    if ms.get_context("device_target") != "Ascend" or cfg.precision.compute_dtype == "float32":
        return None
    if cfg.parallel.model_parallel > 1:
        raise ConfigError("int8 weights on Ascend run on one device (the 13B int8 model is 13 GB); set "
                          f"parallel.model_parallel to 1, not {cfg.parallel.model_parallel}")
    from mindspore.ops.auto_generate import WeightQuantBatchMatmul
    return WeightQuantBatchMatmul(transpose_x=False, transpose_weight=True)


class Embedding(nn.Cell):
    """A learned lookup table ``[rows, hidden]``; ``vocab_parallel`` splits its rows over model_parallel.
    ``quantized``: the table is int8 with a per-row scale (``precision.embedding_quant``); looked-up rows are
    dequantised exactly (row x its scale)."""

    def __init__(self, rows: int, cfg: Config, vocab_parallel: bool, quantized: bool = False):
        super().__init__()
        self.quantized = quantized
        if quantized:
            self.weight = Parameter(initializer(Zero(), (rows, cfg.model.hidden_size), ms.int8), name="weight",
                                    requires_grad=False)
            self.weight_scale = Parameter(initializer(One(), (rows,), ms.float32), name="weight_scale",
                                          requires_grad=False)
        else:
            self.weight = Parameter(initializer(Normal(cfg.model.init_std), (rows, cfg.model.hidden_size),
                                                MS_DTYPES[cfg.precision.param_dtype]), name="weight")
        dp, mp = cfg.parallel.data_parallel, cfg.parallel.model_parallel
        self.gather = ops.Gather().shard((((mp if vocab_parallel else 1), 1), (dp, 1)))

    def construct(self, ids):
        if self.quantized:
            return lookup(self.gather, self.weight, ids, self.weight_scale)
        return lookup(self.gather, self.weight, ids)


def lookup(gather, table, ids, scale=None):
    """Rows of ``table`` for ``ids`` ([b, s] -> [b, s, h]); an int8 table with its row ``scale`` is dequantised
    exactly (row x its scale, float32). A function so that ``generation.FusedDecodeStep`` does the same maths."""
    rows = gather(table, ids, 0)
    if scale is not None:
        row_scale = gather(scale, ids, 0)                                         # [b, s]
        rows = rows.astype(ms.float32) * row_scale.reshape(row_scale.shape + (1,))
    return rows


class Attention(nn.Cell):
    """Multi-head self-attention with separate q/k/v projections.

    For the top query layer, ``query_input`` (the top-query position embedding) replaces ``x`` as the
    source of the queries; keys and values always come from ``x``.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        m, dp, mp = cfg.model, cfg.parallel.data_parallel, cfg.parallel.model_parallel
        self.num_heads, self.head_dim = m.num_heads, m.head_dim
        self.query = Linear(LAYER_LINEARS["attention.query"], cfg)
        self.key = Linear(LAYER_LINEARS["attention.key"], cfg)
        self.value = Linear(LAYER_LINEARS["attention.value"], cfg)
        self.dense = Linear(LAYER_LINEARS["attention.dense"], cfg)
        # Scale q and k each by d^-1/4 before the matmul (= QKᵀ/sqrt(d)), as the original MindSpore code
        # did, so fp16 scores cannot overflow.
        self.scale = float(m.head_dim) ** -0.25
        self.compute_dtype = MS_DTYPES[cfg.precision.compute_dtype]
        self.softmax_dtype = MS_DTYPES[cfg.precision.softmax_dtype]
        self.split_heads = ops.Transpose().shard(((dp, 1, mp, 1),))
        self.merge_heads = ops.Transpose().shard(((dp, mp, 1, 1),))
        self.scores = ops.BatchMatMul(transpose_b=True).shard(((dp, mp, 1, 1), (dp, mp, 1, 1)))
        self.add_mask = ops.Add().shard(((dp, mp, 1, 1), (dp, 1, 1, 1)))
        self.softmax = ops.Softmax(axis=-1).shard(((dp, mp, 1, 1),))
        self.weighted_sum = ops.BatchMatMul().shard(((dp, mp, 1, 1), (dp, mp, 1, 1)))
        self.attention_dropout = Dropout(m.attention_dropout, (dp, mp, 1, 1))

    def _heads(self, x):
        b, s, _ = x.shape
        x = x.reshape(b, s, self.num_heads, self.head_dim)                        # [b, s, h] -> [b, s, n, d]
        return self.split_heads(x, (0, 2, 1, 3))                                  # -> [b, n, s, d]

    def attend(self, q, k, v, mask_adder, k_scaled=False):
        """softmax(q kᵀ / sqrt(d) + mask) v for q [b, n, sq, d], k/v [b, n, sk, d], mask_adder [b, 1, sq, sk].
        ``k_scaled``: k already carries its d^-1/4 (the KV cache stores keys scaled)."""
        scores = self.scores(q * self.scale, k if k_scaled else k * self.scale)   # [b, n, sq, sk]
        scores = self.add_mask(scores, cast(mask_adder, scores.dtype))
        probs = cast(self.softmax(cast(scores, self.softmax_dtype)), self.compute_dtype)
        probs = self.attention_dropout(probs)
        ctx = self.weighted_sum(probs, v)                                         # [b, n, sq, d]
        b, n, sq, d = ctx.shape
        return self.merge_heads(ctx, (0, 2, 1, 3)).reshape(b, sq, n * d)          # -> [b, sq, h]

    def construct(self, x, mask_adder, query_input=None, kv_cache=None, cache_index=None):
        """``kv_cache`` (inference): a (keys, values) pair of ``[b, n, max_len, d]`` Parameters. This call's keys
        and values are written at ``cache_index`` ``[b, n, s, 3]`` and the queries attend over the whole cache
        (``mask_adder`` ``[b, 1, s, max_len]`` hides the positions not written yet)."""
        q_source = x if query_input is None else query_input
        q = self._heads(self.query(q_source))
        k = self._heads(self.key(x))
        v = self._heads(self.value(x))
        if kv_cache is None:
            return self.dense(self.attend(q, k, v, mask_adder))
        # the cache keeps keys already scaled, so a decode step scales its new key, not the whole cache
        # [b, n, max_len, d]
        k = ops.scatter_nd_update(kv_cache[0], cache_index, cast(k * self.scale, kv_cache[0].dtype))
        v = ops.scatter_nd_update(kv_cache[1], cache_index, cast(v, kv_cache[1].dtype))
        return self.dense(self.attend(q, k, v, mask_adder, k_scaled=True))


class FastGelu(nn.Cell):
    """``x * sigmoid(1.702 x)``, the original's fast GELU. On Ascend MindSpore's fused FastGeLU kernel (the
    original's op); elsewhere sigmoid and multiply, because MindSpore's CPU FastGeLU kernel and its gradient are
    several times slower (bench/README.md, "Measurements behind design choices"); the two agree to float32
    rounding."""

    def __init__(self, strategy: tuple):
        super().__init__()
        self.fused = ops.FastGeLU().shard((strategy,)) if ms.get_context("device_target") == "Ascend" else None
        self.scale = ops.Mul().shard((strategy, ()))
        self.sigmoid = ops.Sigmoid().shard((strategy,))
        self.mul = ops.Mul().shard((strategy, strategy))

    def construct(self, x):
        if self.fused is not None:
            return self.fused(x)
        return self.mul(x, self.sigmoid(self.scale(x, 1.702)))


class MLP(nn.Cell):
    """h -> ffn -> h with fast GELU ``x * sigmoid(1.702 x)``."""

    def __init__(self, cfg: Config):
        super().__init__()
        dp, mp = cfg.parallel.data_parallel, cfg.parallel.model_parallel
        self.dense_h_to_4h = Linear(LAYER_LINEARS["mlp.dense_h_to_4h"], cfg)
        self.activation = FastGelu((dp, 1, mp))
        self.dense_4h_to_h = Linear(LAYER_LINEARS["mlp.dense_4h_to_h"], cfg)

    def construct(self, x):
        h = self.dense_h_to_4h(x)                                                 # [b, s, ffn]
        if not self.dense_h_to_4h.applies_gelu:
            h = self.activation(h)
        return self.dense_4h_to_h(h)


def fused_decode_supported(cfg: Config) -> bool:
    """Whether decode steps can run the transformer stack as one CPU kernel (``kernels.decode_stack_op``): float32
    compute, LayerNorm and softmax, weight-only int8 or float32 weights, and the kernel library available."""
    p = cfg.precision
    if (p.compute_dtype, p.layernorm_dtype, p.softmax_dtype) != ("float32",) * 3 or p.activation_quant != "none":
        return False
    if p.weight_quant == "none" and p.param_dtype != "float32":
        return False
    from . import kernels
    return kernels.enabled()


class TransformerLayer(nn.Cell):
    """Pre-LN layer: ``x += Attn(LN1(x)); x += MLP(LN2(x))``; the residual stream is never normalised.

    The top query layer is this same Cell called with ``query_input``. On a CPU with the kernels
    (``fused_decode_supported``) a decode step runs the whole stack of layers as one operator over each layer's
    ``decode_parameters`` (``generation.FusedDecodeStep``).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        dp = cfg.parallel.data_parallel
        self.input_layernorm = LayerNorm(cfg)
        self.attention = Attention(cfg)
        self.post_attention_layernorm = LayerNorm(cfg)
        self.mlp = MLP(cfg)
        self.attention_dropout = Dropout(cfg.model.hidden_dropout, (dp, 1, 1))
        self.mlp_dropout = Dropout(cfg.model.hidden_dropout, (dp, 1, 1))

    def construct(self, x, mask_adder, query_input=None, kv_cache=None, cache_index=None):
        attention = self.attention(self.input_layernorm(x), mask_adder, query_input, kv_cache, cache_index)
        x = x + self.attention_dropout(attention)
        return x + self.mlp_dropout(self.mlp(self.post_attention_layernorm(x)))

    def decode_parameters(self) -> list:
        """This layer's Parameters in the order the decode kernel takes them (``kernels/decode_stack.cc``):
        its modules in ``LAYER_MODULES`` order, each module's weight[, weight_scale], bias."""
        params = []
        for spec in LAYER_MODULES:
            module = self
            for name in spec.module.split("."):
                module = getattr(module, name)
            params += module.kernel_parameters() if isinstance(spec, LinearSpec) else [module.weight, module.bias]
        return params


class TiedHead(nn.Cell):
    """Logits from the word embedding: ``[tokens, h]`` x ``[V, h]ᵀ`` -> float32 ``[tokens, V]``. A Cell of its own so
    that pipeline parallelism can place it on the last stage while the embedding it reads lives on the first.
    With an int8 embedding (``precision.embedding_quant``) the row scales apply to the logits, through the CPU
    int8 kernel where it runs (the head is 15% of the 350M model's bytes in fp32, 40% of its int8 decode)."""

    def __init__(self, cfg: Config, vocab_parallel: bool):
        super().__init__()
        dp, mp = cfg.parallel.data_parallel, cfg.parallel.model_parallel
        self.matmul = ops.MatMul(transpose_b=True).shard(((dp, 1), ((mp if vocab_parallel else 1), 1)))
        self.compute_dtype = MS_DTYPES[cfg.precision.compute_dtype]
        self.quantized = cfg.precision.embedding_quant == "int8"
        self.int8_kernel = None
        if self.quantized and cfg.precision.compute_dtype == "float32":
            from . import kernels
            self.int8_kernel = kernels.int8_linear_op() if kernels.enabled() else None
        self.ascend_int8 = ascend_int8_matmul(cfg) if self.quantized else None

    def construct(self, x, weight, scale=None):
        if self.int8_kernel is not None:
            return self.int8_kernel(cast(x, ms.float32), weight, scale)
        if self.ascend_int8 is not None:
            logits = self.ascend_int8(cast(x, self.compute_dtype), weight, cast(scale, self.compute_dtype))
            return cast(logits, ms.float32)
        logits = self.matmul(cast(x, self.compute_dtype), cast(weight, self.compute_dtype))
        if self.quantized:
            logits = logits * cast(scale, self.compute_dtype)
        return cast(logits, ms.float32)


class CodeGeeX(nn.Cell):
    """CodeGeeX language model: token ids ``[b, s]`` -> float32 logits ``[b, s, padded_vocab_size]``.

    ``position_ids`` default to ``0..s-1``; ``attention_mask`` ``[b, s, s]`` (1 = may attend, already causal)
    defaults to the causal mask. Pass both from ``masks.eod_reset_masks`` for packed pre-training samples.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        cfg.precision.check_device(ms.get_context("device_target"))
        self.config = cfg
        m, p = cfg.model, cfg.parallel
        dp = p.data_parallel
        vocab_parallel = not p.vocab_emb_dp
        self.compute_dtype = MS_DTYPES[cfg.precision.compute_dtype]

        self.word_embeddings = Embedding(m.padded_vocab_size, cfg, vocab_parallel,
                                         quantized=cfg.precision.embedding_quant == "int8")
        self.position_embeddings = Embedding(m.max_position_embeddings, cfg, vocab_parallel=False)
        self.top_query_embeddings = Embedding(m.max_position_embeddings, cfg, vocab_parallel=False)
        self.embedding_dropout = Dropout(m.hidden_dropout, (dp, 1, 1))
        self.layers = nn.CellList([TransformerLayer(cfg) for _ in range(m.num_layers)])
        self.final_layernorm = LayerNorm(cfg)
        self.top_query_layer = TransformerLayer(cfg)
        self.fused_decode = fused_decode_supported(cfg)     # decode steps may use generation.FusedDecodeStep
        self.head = TiedHead(cfg, vocab_parallel)

        causal = np.tril(np.ones((m.max_position_embeddings, m.max_position_embeddings), np.float32))
        self.causal_mask = Tensor(causal)
        self.positions = Tensor(np.arange(m.max_position_embeddings, dtype=np.int32))

        stages = p.pipeline_stages
        blocks = list(self.layers) + [self.top_query_layer]
        if stages > 1:          # equal numbers of layers per stage; the embeddings first, the head last
            for cell in (self.word_embeddings, self.position_embeddings, self.embedding_dropout):
                cell.pipeline_stage = 0
            for cell in (self.final_layernorm, self.top_query_embeddings, self.head):
                cell.pipeline_stage = stages - 1
        for i, block in enumerate(blocks):
            if stages > 1:
                block.pipeline_stage = i * stages // len(blocks)
            if p.gradient_aggregation_group > 1:    # one fused gradient all-reduce per group of layers (Ascend)
                block.set_comm_fusion(i // p.gradient_aggregation_group + 1)
            if p.recompute:
                block.recompute()

    def mask_adder(self, attention_mask, batch: int, seq: int):
        """0 where attention is allowed, -10000 where blocked: ``[b, s, s]`` (or None = causal) -> ``[b, 1, s, s]``."""
        if attention_mask is None:
            allowed = ops.broadcast_to(self.causal_mask[:seq, :seq].reshape(1, 1, seq, seq), (batch, 1, seq, seq))
        else:
            allowed = cast(attention_mask, ms.float32).reshape(batch, 1, seq, seq)
        return cast((1.0 - allowed) * MASK_VALUE, self.compute_dtype)

    def construct(self, input_ids, position_ids=None, attention_mask=None):
        b, s = input_ids.shape
        if position_ids is None:
            position_ids = ops.broadcast_to(self.positions[:s].reshape(1, s), (b, s))
        mask_adder = self.mask_adder(attention_mask, b, s)                        # [b, 1, s, s]
        x = self.hidden_states(input_ids, position_ids, mask_adder)               # [b, s, h]
        return self.lm_head(x.reshape(b * s, -1)).reshape(b, s, -1)               # [b, s, V]

    def hidden_states(self, input_ids, position_ids, mask_adder, key_caches=None, value_caches=None, cache_index=None):
        """The output of the top query layer ``[b, s, h]``. With caches (one key and one value Parameter per
        layer, the top query layer last) each layer reads and extends its cache (see Attention)."""
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)   # [b, s, h]
        x = self.embedding_dropout(cast(x, self.compute_dtype))
        for i, layer in enumerate(self.layers):
            cache = None if key_caches is None else (key_caches[i], value_caches[i])
            x = layer(x, mask_adder, None, cache, cache_index)
        x = self.final_layernorm(x)
        queries = cast(self.top_query_embeddings(position_ids), self.compute_dtype)   # [b, s, h]
        cache = None if key_caches is None else (key_caches[-1], value_caches[-1])
        return self.top_query_layer(x, mask_adder, queries, cache, cache_index)

    def lm_head(self, x):
        """Logits tied to the word embedding: ``[tokens, h]`` -> float32 ``[tokens, padded_vocab_size]``."""
        if self.word_embeddings.quantized:
            return self.head(x, self.word_embeddings.weight, self.word_embeddings.weight_scale)
        return self.head(x, self.word_embeddings.weight)
