"""The graphs of generation: the in-graph sampler, the KV-cached model (graph path), the fused decode and prefill
steps of the CPU kernels, the cache-row copy, and the prefill bucket and cache length arithmetic. ``generation``
drives them (``Generator``)."""
from __future__ import annotations


import numpy as np
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from .checkpoint import quantize_rows
from .model import MASK_VALUE, MS_DTYPES, CodeGeeX, cast, lookup


DEFAULT_CANDIDATES = 1024
PREFILL_BUCKET = 16                 # the smallest prefill bucket; the others double it
CACHE_GRANULE = 64                  # KV-cache lengths are multiples of this
PREFILL_CHUNK = 256                 # the longest prefill call: longer prompts run in chunks of this many tokens


def prefill_bucket(length: int, max_len: int, smallest: int = PREFILL_BUCKET) -> int:
    """The padded length of a ``length``-token prompt: ``smallest`` doubled until it holds the prompt, at most
    ``max_len``."""
    bucket = smallest
    while bucket < length:
        bucket *= 2
    return min(bucket, max_len)


def cache_length(tokens: int, max_len: int) -> int:
    """A KV-cache length for prompts and completions of ``tokens`` tokens in all: rounded up to a multiple of
    ``CACHE_GRANULE``, at most ``max_len`` (the model's positions). Every decode step attends over the whole
    cache, so a cache no longer than needed is faster."""
    return min(max_len, -(-tokens // CACHE_GRANULE) * CACHE_GRANULE)


class Sampler(nn.Cell):
    """Logits ``[b, V]`` -> token ids ``[b]``: temperature, then top-k, then top-p (inclusive: the smallest set
    whose probability reaches p, as HF/Megatron), then a Gumbel-max draw.

    Only the ``candidates`` highest logits are considered (the original MindSpore code used 5,000); top-k
    above that is capped. ``top_k`` = candidates and ``top_p`` > 1 switch the filters off.
    """

    def __init__(self, vocab_size: int, candidates: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.candidates = min(candidates, vocab_size)
        self.ranks = Tensor(np.arange(self.candidates, dtype=np.int32).reshape(1, -1))
        # on a CPU with the kernels the same maths in one C++ call (MindSpore's CPU TopK alone took 1.9 ms of a
        # 350M decode step, and each of the operators below costs the runtime's time per operator)
        from . import kernels
        self.kernel = kernels.sampler_op() if kernels.enabled() else None
        self.vocab = Tensor(np.array([vocab_size], np.int32))

    def construct(self, logits, noise, temperature, top_k, top_p):
        if self.kernel is not None:
            return self.kernel(logits, self.vocab, noise, temperature, top_k, top_p)
        # [b, K], sorted descending; the padding rows of the vocabulary are never tokens
        values, indices = ops.topk(logits[:, :self.vocab_size], self.candidates)
        # temperature, top_k, top_p: scalars, or one value per row ([b]) when rows sample differently
        values = values / temperature.reshape(-1, 1)
        values = ops.masked_fill(values, self.ranks >= top_k.reshape(-1, 1), float("-inf"))
        probs = ops.softmax(values, -1)
        before = ops.cumsum(probs, -1) - probs                                 # probability of the better tokens
        values = ops.masked_fill(values, before > top_p.reshape(-1, 1), float("-inf"))
        choice = ops.argmax(values - ops.log(-ops.log(noise)), -1)             # [b]
        return ops.gather_elements(indices, 1, choice.reshape(-1, 1)).reshape(-1).astype(ms.int32)


class CachedCodeGeeX(nn.Cell):
    """The model plus its KV cache: ``(tokens [b, s], start, last_index, sampling...)`` -> next token ids ``[b]``.

    ``tokens`` are written at positions ``start .. start+s-1``; the next token is sampled from the logits at
    ``last_index``. With ``return_logits=True`` it returns those float32 logits ``[b, V]`` instead (tests).
    """

    def __init__(self, model: CodeGeeX, batch_size: int, max_len: int, candidates: int = DEFAULT_CANDIDATES,
                 return_logits: bool = False, fused_decode: bool = True, cache_name: str = "kv_cache"):
        """``fused_decode``: whether decode steps should go to a ``FusedDecodeStep`` of this engine where the model
        supports it (``model.fused_decode``; the Generator does that); False keeps them here (tests compare).
        ``cache_name``: the cache Parameters' name prefix (two engines on one model need two)."""
        super().__init__(auto_prefix=False)          # keep the model's parameter names unprefixed
        m = model.config.model
        if not 0 < max_len <= m.max_position_embeddings:
            raise ValueError(f"max_len must be in 1..{m.max_position_embeddings}, got {max_len}")
        self.model = model
        self.batch_size, self.max_len, self.cache_name = batch_size, max_len, cache_name
        self.num_heads = m.num_heads
        dtype = MS_DTYPES[model.config.precision.compute_dtype]
        shape = (batch_size, m.num_heads, max_len, m.head_dim)
        layers = m.num_layers + 1
        self.key_caches = ParameterTuple([Parameter(Tensor(np.zeros(shape), dtype), name=f"{cache_name}.{i}.key",
                                                    requires_grad=False) for i in range(layers)])
        self.value_caches = ParameterTuple([Parameter(Tensor(np.zeros(shape), dtype), name=f"{cache_name}.{i}.value",
                                                      requires_grad=False) for i in range(layers)])
        self.key_positions = Tensor(np.arange(max_len, dtype=np.int32).reshape(1, max_len))
        self.heads = Tensor(np.arange(m.num_heads, dtype=np.int32).reshape(1, m.num_heads, 1, 1))
        self.rows = Tensor(np.arange(batch_size, dtype=np.int32).reshape(batch_size, 1, 1, 1))
        self.compute_dtype = dtype
        self.return_logits = return_logits
        self.fused_decode = fused_decode and model.fused_decode
        self.sampler = Sampler(m.vocab_size, candidates)

    def construct(self, tokens, start, last_index, noise, temperature, top_k, top_p):
        # start and last_index: scalars, or one per row ([b]) so that rows hold different prompts
        b, s = tokens.shape
        positions = ops.broadcast_to(start.reshape(-1, 1), (b, 1)) + ops.arange(s, dtype=ms.int32).reshape(1, s)
        position_ids = positions                                                  # [b, s]
        allowed = (self.key_positions.reshape(1, 1, self.max_len) <= positions.reshape(b, s, 1)).astype(ms.float32)
        mask_adder = ((1.0 - allowed) * MASK_VALUE).reshape(b, 1, s, self.max_len).astype(self.compute_dtype)
        shape = (b, self.num_heads, s, 1)
        cache_index = ops.concat([ops.broadcast_to(self.rows, shape), ops.broadcast_to(self.heads, shape),
                                  ops.broadcast_to(positions.reshape(b, 1, s, 1), shape)], -1)   # [b, n, s, 3]
        x = self.model.hidden_states(tokens, position_ids, mask_adder, self.key_caches, self.value_caches,
                                     cache_index)                                 # [b, s, h]
        index = ops.broadcast_to(last_index.reshape(-1, 1, 1), (b, 1, x.shape[2]))
        logits = self.model.lm_head(ops.gather_elements(x, 1, index).reshape(b, -1))   # [b, h] -> [b, V]
        if self.return_logits:
            return logits
        return self.sampler(logits, noise, temperature, top_k, top_p)


class FusedDecodeStep(nn.Cell):
    """``CachedCodeGeeX`` for one token per row (a decode step, same inputs and output, same caches) with the whole
    transformer stack one CPU kernel (``kernels.decode_stack_op``: every layer's LayerNorms, six matmuls, attention
    over the cache, which it extends in place, GELU and residuals; the final LayerNorm; the top query layer), for
    models with ``fused_decode``.

    A flat Cell: it holds the model's Parameters (the same objects, not copies) and primitives, and no sub-Cell of
    the model: MindSpore's launch of a Cell that reaches into the model's Cells was slower per decode step than the
    same operators in a Cell without them (bench/README.md, "Measurements behind design choices"). The
    embedding lookup is ``model.lookup``; the head is a CPU kernel on the model's word table (float32 compute: the
    only case with ``fused_decode``); a float32 or float16 table that feeds the sampler is read through an int8 copy
    of it first, which this Cell holds (a quarter or half of the table's bytes more memory; ``screened_head``).
    """

    def __init__(self, cached: CachedCodeGeeX, screened_head: bool = True):
        """``screened_head``: read a float32 or float16 head that feeds the sampler through an int8 copy of its table
        first (``kernels.screened_head_op``: the same draws, fewer bytes); False reads the whole table."""
        super().__init__(auto_prefix=False)
        from . import kernels
        model = cached.model
        m, int8 = model.config.model, model.config.precision.weight_quant == "int8"
        if not model.fused_decode:
            raise ValueError("this model's decode steps cannot run as one stack kernel (model.fused_decode is False)")
        # the stack kernel's inputs after the embeddings: each layer's Parameters and caches, the top query layer's
        # last, then the final LayerNorm's (the order of kernels/decode_stack.cc)
        layers = list(model.layers) + [model.top_query_layer]
        final = model.final_layernorm
        self.stack_parameters = ParameterTuple(
            [p for i, layer in enumerate(layers)
             for p in layer.decode_parameters() + [cached.key_caches[i], cached.value_caches[i]]] +
            [final.weight, final.bias])
        self.stack_kernel = kernels.decode_stack_op(int8)
        self.constants = Tensor(np.array([m.layernorm_epsilon, m.head_dim ** -0.25], np.float32))
        self.gather = ops.Gather()
        embeddings = model.word_embeddings
        self.word_table, self.word_scale = embeddings.weight, embeddings.weight_scale if embeddings.quantized else None
        self.position_table = model.position_embeddings.weight
        self.top_query_table = model.top_query_embeddings.weight
        # the tied head through the CPU kernels: int8 rows times their scales (as TiedHead), or float32 rows streamed
        # and split over the kernel threads (MindSpore's MatMul read the 350M model's 213 MB float32 table at about
        # half the rate, and its sums depend on the number of rows)
        if self.word_scale is not None:
            self.head_kernel = model.head.int8_kernel
        elif self.word_table.dtype == ms.float16:        # read at half the bytes, converted in registers
            self.head_kernel = kernels.f16_linear_op()
        else:
            self.head_kernel = kernels.f32_linear_op()
        self.head_table_cast = self.word_table.dtype not in (ms.float16, ms.float32)
        self.sampler = Sampler(m.vocab_size, cached.sampler.candidates)
        self.return_logits = cached.return_logits
        # a float head feeding the sampler reads an int8 copy of its table first and only the float rows that can
        # be drawn (the same draws as the whole table: kernels/screened_head.cc)
        self.screened = (screened_head and self.word_table.dtype in (ms.float32, ms.float16) and
                         self.word_scale is None and not self.return_logits)
        if self.screened:
            self.screen, self.screen_scale = self.screen_parameters(cached.cache_name)
            self.head_kernel = kernels.screened_head_op()

    takes_last_index = False        # (Generator leaves that input out)

    SCREEN_ROWS = 4096              # rows quantised at a time (bounds the float32 temporaries)

    def screen_parameters(self, prefix: str) -> tuple[Parameter, Parameter]:
        """The int8 copy of the float word table and its row scales (``checkpoint.quantize_rows``), as Parameters
        named after the engine's caches (one copy per engine). A copy of the table as it is now: weights loaded
        into the model later need a new step (the Generator builds its steps after loading)."""
        table = self.word_table.asnumpy()
        screen = np.empty(table.shape, np.int8)
        scale = np.empty(table.shape[0], np.float32)
        for lo in range(0, table.shape[0], self.SCREEN_ROWS):
            screen[lo:lo + self.SCREEN_ROWS], scale[lo:lo + self.SCREEN_ROWS] = quantize_rows(
                table[lo:lo + self.SCREEN_ROWS])
        return (Parameter(Tensor(screen), name=f"{prefix}.head_screen", requires_grad=False),
                Parameter(Tensor(scale), name=f"{prefix}.head_screen_scale", requires_grad=False))

    def construct(self, tokens, start, noise, temperature, top_k, top_p):
        """``CachedCodeGeeX``'s inputs but ``last_index`` (0 in a decode step): MindSpore 2.9's launch of a graph
        with an input it does not use was slower per step than without (bench/README.md, "Measurements behind
        design choices")."""
        return self.output(self.hidden_states(tokens, start), noise, temperature, top_k, top_p)

    def hidden_states(self, tokens, start):
        """tokens [b, s] at positions start .. start+s-1 -> the top layer's output [b * s, h] (row-major), their
        keys and values written into the caches."""
        b, s = tokens.shape
        if s == 1:                                                                # a decode step: no arange
            positions = ops.broadcast_to(start.reshape(-1), (b,))                 # [b]
        else:
            positions = (ops.broadcast_to(start.reshape(-1, 1), (b, 1)) +
                         ops.arange(s, dtype=ms.int32).reshape(1, s)).reshape(-1)    # [b * s]
        position_ids = positions.reshape(b, s)
        if self.word_scale is None:
            words = lookup(self.gather, self.word_table, tokens)
        else:
            words = lookup(self.gather, self.word_table, tokens, self.word_scale)
        x = cast(words + lookup(self.gather, self.position_table, position_ids), ms.float32).reshape(b * s, -1)
        queries = cast(lookup(self.gather, self.top_query_table, position_ids), ms.float32).reshape(b * s, -1)
        return self.stack_kernel(x, queries, *self.stack_parameters, positions, self.constants)

    def output(self, x, noise, temperature, top_k, top_p):
        """The tied head on x [b, h]: logits [b, V], or the sampled ids [b]."""
        if self.screened:
            logits = self.head_kernel(x, self.screen, self.screen_scale, self.word_table, self.sampler.vocab, top_k,
                                      noise)
        elif self.word_scale is None:
            logits = self.head_kernel(x, cast(self.word_table, ms.float32) if self.head_table_cast else self.word_table)
        else:
            logits = self.head_kernel(x, self.word_table, self.word_scale)
        return logits if self.return_logits else self.sampler(logits, noise, temperature, top_k, top_p)


class FusedPrefillStep(FusedDecodeStep):
    """``CachedCodeGeeX`` (same inputs and output, same caches) for a prefill chunk with each layer one CPU kernel
    over all of the chunk's tokens: the graph holds a layer's output, [b * s, h], between two layers, where the
    graph path (``CachedCodeGeeX``) holds every layer's attention scores, [b, heads, s, cache], at once."""
    takes_last_index = True

    def construct(self, tokens, start, last_index, noise, temperature, top_k, top_p):
        b, s = tokens.shape
        x = self.hidden_states(tokens, start).reshape(b, s, -1)
        index = ops.broadcast_to(last_index.reshape(-1, 1, 1), (b, 1, x.shape[2]))
        return self.output(ops.gather_elements(x, 1, index).reshape(b, -1), noise, temperature, top_k, top_p)


class CacheRowCopy(nn.Cell):
    """Copies the one cache row of the prefill engine into a row (``slot`` [1] int32) of the decode engine's caches:
    a prompt prefilled once starts every sample that shares it. The whole row is copied (one shape, one graph); its
    positions after the prompt hold stale keys and values, which every decode step overwrites before it attends to
    them, as it does with the padding of a prefill chunk."""

    def __init__(self, source: CachedCodeGeeX, target: CachedCodeGeeX):
        super().__init__(auto_prefix=False)
        self.source_keys, self.source_values = source.key_caches, source.value_caches
        self.target_keys, self.target_values = target.key_caches, target.value_caches
        self.layers = len(source.key_caches)
        self.update = ops.ScatterUpdate()

    def construct(self, slot):
        for i in range(self.layers):
            self.update(self.target_keys[i], slot, self.source_keys[i])
            self.update(self.target_values[i], slot, self.source_values[i])
        return slot
