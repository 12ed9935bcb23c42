"""The CPU matmul kernels (codegeex_ms/kernels/linear.cc) inside MindSpore graphs: every path this CPU runs against
numpy, the int8 Linear of the model with and without them, and the fallback when they cannot be built."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codegeex_ms import kernels

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="the kernels could not be built here (g++?)")

# odd and even sizes, batch 1 (decode) and > 1 (prefill, with and without a partial 4-row tile), K not a multiple
# of the vector widths (8, 16) or of the 64-element step, N not a multiple of the 4-row block
SHAPES = [(1, 1, 1), (1, 7, 13), (1, 64, 64), (1, 130, 200), (2, 33, 37), (3, 5, 71), (4, 8, 16), (5, 64, 48),
          (9, 17, 129), (17, 130, 100), (64, 96, 1024)]


@pytest.mark.parametrize("path", kernels.supported_paths())
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_int8_kernel_equals_numpy(path, m, n, k, ms_context):
    from mindspore import Tensor
    rng = np.random.default_rng(m * 1000 + n + k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    scale = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    expected = x.astype(np.float64) @ (w.astype(np.float64) * scale[:, None]).T
    got = kernels.int8_linear_op(path)(Tensor(x), Tensor(w), Tensor(scale)).asnumpy()
    assert got.shape == (m, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("path", kernels.supported_paths())
@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("m, n, k", [(1, 130, 200), (2, 33, 37), (5, 64, 48), (17, 130, 100)])
def test_bias_and_gelu_are_applied_in_the_kernel(path, gelu, m, n, k, ms_context):
    """The fused epilogue: + bias, then x * sigmoid(1.702 x) (the model's fast GELU), for int8 and f32 weights."""
    from mindspore import Tensor
    rng = np.random.default_rng(m + n + k + gelu)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    scale = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    z = x.astype(np.float64) @ (w.astype(np.float64) * scale[:, None]).T + bias
    expected = z / (1 + np.exp(-1.702 * z)) if gelu else z
    got = kernels.int8_linear_op(path, gelu)(Tensor(x), Tensor(w), Tensor(scale), Tensor(bias)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    wf = (w * scale[:, None]).astype(np.float32)
    got = kernels.f32_linear_op(path, gelu)(Tensor(x), Tensor(wf), Tensor(bias)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("path", kernels.supported_paths())
@pytest.mark.parametrize("m, n, k", SHAPES[::2])
def test_f32_kernel_equals_numpy(path, m, n, k, ms_context):
    from mindspore import Tensor
    rng = np.random.default_rng(m + n * 7 + k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    got = kernels.f32_linear_op(path)(Tensor(x), Tensor(w)).asnumpy()
    np.testing.assert_allclose(got, x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("path", kernels.supported_paths())
@pytest.mark.parametrize("m, n, k", SHAPES[1::2])
def test_f16_kernel_equals_numpy(path, m, n, k, ms_context):
    """float16 weights converted in registers, including subnormals, infinities' neighbours and signed zeros."""
    from mindspore import Tensor
    rng = np.random.default_rng(m + n * 5 + k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
    special = np.array([0.0, -0.0, 6e-8, -6e-8, 3e-5, 65504.0, -65504.0], np.float16)   # subnormal, largest
    w.flat[:min(w.size, special.size)] = special[:w.size]
    got = kernels.f16_linear_op(path)(Tensor(x), Tensor(w)).asnumpy()
    expected = x.astype(np.float64) @ w.astype(np.float64).T
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def w8a8_reference(x, w, scale):
    """The int8-activation kernel's maths in numpy: per-row symmetric quantisation, integer sums, two scales."""
    amax = np.abs(x).max(axis=1).astype(np.float32)
    inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0)
    q = np.rint(x * inv[:, None]).astype(np.int64)
    acc = q @ w.astype(np.int64).T
    return (acc.astype(np.float32) * (amax / np.float32(127))[:, None]) * scale[None, :]


W8A8_PATHS = [p for p in kernels.W8A8_PATHS if p != "vnni" or kernels.has_vnni()]


@pytest.mark.parametrize("path", W8A8_PATHS)
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_w8a8_kernel_equals_its_integer_maths(path, m, n, k, ms_context):
    """Bit for bit the numpy version of the same quantisation and integer sums (including the masked K tail and
    a zero row), and within the activation's rounding of the float product."""
    from mindspore import Tensor
    rng = np.random.default_rng(m * 7 + n + k * 3)
    x = rng.standard_normal((m, k)).astype(np.float32)
    if m > 2:
        x[1] = 0.0
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    scale = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    got = kernels.w8a8_linear_op(path)(Tensor(x), Tensor(w), Tensor(scale)).asnumpy()
    assert got.shape == (m, n) and got.dtype == np.float32
    np.testing.assert_array_equal(got, w8a8_reference(x, w, scale))
    exact = x.astype(np.float64) @ (w.astype(np.float64) * scale[:, None]).T
    bound = (np.abs(x).max(axis=1, keepdims=True) / 127 / 2) * (np.abs(w).sum(axis=1) * scale)[None, :]
    assert np.all(np.abs(got - exact) <= bound * 1.001 + 1e-6)


@pytest.mark.parametrize("path", W8A8_PATHS)
@pytest.mark.parametrize("gelu", [False, True])
def test_w8a8_bias_gelu_and_threads(path, gelu, ms_context):
    from mindspore import Tensor
    rng = np.random.default_rng(11 + gelu)
    x = rng.standard_normal((6, 150)).astype(np.float32)
    w = rng.integers(-127, 128, (300, 150)).astype(np.int8)
    scale = (rng.random(300) * 0.02 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(300).astype(np.float32)
    z = w8a8_reference(x, w, scale).astype(np.float64) + bias
    expected = z / (1 + np.exp(-1.702 * z)) if gelu else z
    got = kernels.w8a8_linear_op(path, gelu)(Tensor(x), Tensor(w), Tensor(scale), Tensor(bias)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_int8_activations_config_needs_int8_weights():
    from codegeex_ms.config import ConfigError, PrecisionConfig
    with pytest.raises(ConfigError, match="activation_quant = int8 needs precision.weight_quant = int8"):
        PrecisionConfig(activation_quant="int8")
    with pytest.raises(ConfigError, match="must be none or int8"):
        PrecisionConfig(weight_quant="int8", activation_quant="int4")


def test_threads_give_the_same_result(ms_context):
    """1, 2 and 3 kernel threads give the same bytes for one row of x and for two; 40 calls in a row through the
    pool, whose workers either poll between calls (default) or sleep at once (CODEGEEX_KERNEL_SPIN_US=0)."""
    code = ("import numpy as np; from mindspore import Tensor; from codegeex_ms import kernels; "
            "r = np.random.default_rng(0); x = r.standard_normal((2, 300)).astype(np.float32); "
            "w = r.integers(-127, 128, (1000, 300)).astype(np.int8); s = np.ones(1000, np.float32); "
            "op = kernels.int8_linear_op(); "
            "ys = [op(Tensor(x[:m]), Tensor(w), Tensor(s)).asnumpy() for _ in range(20) for m in (1, 2)]; "
            "assert all((y == ys[i % 2]).all() for i, y in enumerate(ys)); "
            "np.save('/dev/stdout', np.concatenate(ys[:2]))")
    outs = []
    for threads, spin in (("1", "100"), ("2", "100"), ("2", "0"), ("3", "0")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=300,
                             env={**os.environ, "CODEGEEX_KERNEL_THREADS": threads,
                                  "CODEGEEX_KERNEL_SPIN_US": spin}).stdout
        outs.append(out[-3 * 1000 * 4:])
    assert outs[1:] == outs[:1] * 3


FORKED_CHILD_CODE = """
import ctypes, os, sys
import numpy as np
from codegeex_ms import kernels
lib = ctypes.CDLL(str(kernels.library()))


def matmul(x, w, s):
    y = np.zeros((x.shape[0], w.shape[0]), np.float32)
    arrays = [x, w, s, y]
    shapes = [(ctypes.c_int64 * a.ndim)(*a.shape) for a in arrays]
    status = lib.linear_int8_auto(4, (ctypes.c_void_p * 4)(*[a.ctypes.data for a in arrays]),
                                  (ctypes.c_int * 4)(*[a.ndim for a in arrays]),
                                  (ctypes.POINTER(ctypes.c_int64) * 4)(*shapes), None, None, None)
    assert status == 0
    return y


r = np.random.default_rng(0)
x = r.standard_normal((2, 300)).astype(np.float32)
w = r.integers(-127, 128, (1000, 300)).astype(np.int8)
s = np.ones(1000, np.float32)
before = matmul(x, w, s)                  # the parent's pool starts here
pid = os.fork()
if pid == 0:                              # the child: no pool threads; sys.exit also runs the pool's destructor
    sys.exit(0 if (matmul(x, w, s) == before).all() else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
print("forked child ok")
"""


def test_kernels_run_in_a_forked_child():
    """A process forked after the pool started has none of its threads: its calls must still return (on the calling
    thread) with the same result, and its exit must not wait for them."""
    out = subprocess.run([sys.executable, "-c", FORKED_CHILD_CODE], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CODEGEEX_KERNEL_THREADS": "2"})
    assert out.returncode == 0 and "forked child ok" in out.stdout, out.stderr[-2000:]


def random_weights(*models, rng=None, std: float = 0.05):
    """The same random values in every model (models of one config): int8 weights, row scales below 0.002, normal
    floats of ``std`` elsewhere, drawn from ``rng`` (default: seed 0); the models in inference mode. Returns the
    first model."""
    import mindspore as ms
    from mindspore import Tensor
    rng = np.random.default_rng(0) if rng is None else rng
    for params in zip(*(model.get_parameters() for model in models)):
        p = params[0]
        if p.dtype == ms.int8:
            value = rng.integers(-127, 128, p.shape).astype(np.int8)
        elif p.name.endswith("weight_scale"):
            value = (rng.random(p.shape) * 0.002).astype(np.float32)
        else:
            value = (rng.standard_normal(p.shape) * std).astype(np.float32)
        for q in params:
            q.set_data(Tensor(value, q.dtype))
    for model in models:
        model.set_train(False)
    return models[0]


def logits_with_same_random_int8_weights(a, b):
    """Both int8 models given the same random values (int8 weights, small row scales, small floats elsewhere) and
    run on the same random ids in inference mode: their logits."""
    from mindspore import Tensor
    rng = np.random.default_rng(0)
    random_weights(a, b, rng=rng, std=0.02)
    ids = Tensor(rng.integers(0, 50000, (2, 24)).astype(np.int32))
    return a(ids).asnumpy(), b(ids).asnumpy()


def test_quantized_model_same_logits_and_greedy_tokens_with_and_without_kernels(tiny_config, ms_context):
    """The int8 model with the kernel equals the int8 model on MindSpore's cast-then-matmul path."""
    import mindspore as ms
    from codegeex_ms.model import CodeGeeX
    cfg = tiny_config.replace(precision={"weight_quant": "int8"})
    ms.set_seed(3)
    fast = CodeGeeX(cfg)
    with kernels.disabled():
        plain = CodeGeeX(cfg)
    assert fast.layers[0].attention.query.int8_kernel is not None
    assert plain.layers[0].attention.query.int8_kernel is None
    a, b = logits_with_same_random_int8_weights(fast, plain)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert (a.argmax(-1) == b.argmax(-1)).all()


@pytest.mark.skipif(not kernels.has_vnni(), reason="int8 activations run with AVX-512 VNNI only")
def test_int8_activations_model_stays_close_to_weight_only(tiny_config, ms_context):
    """precision.activation_quant = int8 swaps every int8 Linear's kernel for the VNNI one (not the head's); the
    logits move by the activations' rounding only: a small share of their own spread."""
    import mindspore as ms
    from codegeex_ms.model import CodeGeeX
    cfg = tiny_config.replace(precision={"weight_quant": "int8"})
    ms.set_seed(3)
    exact = CodeGeeX(cfg)
    approx = CodeGeeX(cfg.replace(precision={"activation_quant": "int8"}))
    assert "w8a8" in str(approx.layers[0].attention.query.int8_kernel.func)
    assert "w8a8" not in str(exact.layers[0].attention.query.int8_kernel.func)
    a, b = logits_with_same_random_int8_weights(exact, approx)
    assert not np.array_equal(a, b)                                   # it is a different computation
    assert np.abs(a - b).max() < 0.05 * a.std(), (np.abs(a - b).max(), a.std())      # measured: 2%


def test_no_compiler_falls_back_with_one_warning(tmp_path):
    code = ("import warnings; warnings.simplefilter('always'); from codegeex_ms import kernels; "
            "print(kernels.library()); print(kernels.library())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "CXX": "no-such-compiler", "XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0
    assert result.stdout.split() == ["None", "None"]
    assert result.stderr.count("g++ not found") == 1


def test_int8_embedding_model_matches_the_dequantized_model(tiny_config, tmp_path, ms_context):
    """quantize --embedding int8: the lookup and the tied head use the int8 table and its row scales; the model
    equals an fp32 model whose word embedding is the dequantised table (same Linears), with and without the
    kernels."""
    import mindspore as ms
    from mindspore import Tensor
    from codegeex_ms import checkpoint
    from codegeex_ms.model import CodeGeeX
    from codegeex_ms.quantize_export import quantize_checkpoint
    from codegeex_ms.safetensors_io import SafetensorsReader
    ms.set_seed(5)
    checkpoint.save(CodeGeeX(tiny_config), tmp_path / "fp32")
    quantize_checkpoint(tmp_path / "fp32", tmp_path / "int8", embedding=True)
    q = checkpoint.load(tmp_path / "int8")
    assert q.config.precision.embedding_quant == "int8" and q.word_embeddings.weight.dtype == ms.int8
    reader = SafetensorsReader(tmp_path / "int8" / checkpoint.WEIGHTS_FILE)
    table = reader.get("word_embeddings.weight").astype(np.float32) * reader.get("word_embeddings.weight_scale")[:,
                                                                                                                 None]
    with kernels.disabled():
        plain_q = checkpoint.load(tmp_path / "int8")
        reference = CodeGeeX(q.config.replace(precision={"embedding_quant": "none"}))
    for p in reference.get_parameters():
        p.set_data(Tensor(table) if p.name == "word_embeddings.weight" else dict(
            (x.name, x) for x in plain_q.get_parameters())[p.name].value())
    ids = Tensor(np.random.default_rng(1).integers(0, 50000, (2, 16)).astype(np.int32))
    want = reference(ids).asnumpy()
    for model in (q, plain_q):
        model.set_train(False)
        np.testing.assert_allclose(model(ids).asnumpy(), want, rtol=1e-5, atol=1e-5)
    fp32_bytes = (tmp_path / "fp32" / checkpoint.WEIGHTS_FILE).stat().st_size
    assert (tmp_path / "int8" / checkpoint.WEIGHTS_FILE).stat().st_size < 0.3 * fp32_bytes


def cached_logits(model, fused: bool, prompt: np.ndarray, lengths: np.ndarray, steps: int, max_len: int = 64,
                  chunk: int | None = None):
    """Prefill rows of different lengths (in chunks of ``chunk`` positions: each row's logits from the chunk that
    holds its last token), then greedy decode steps (each row at its own position): the logits of every call
    [steps + 1, b, V] and the engine (its caches)."""
    from mindspore import Tensor
    from codegeex_ms.generation import CachedCodeGeeX, FusedDecodeStep, FusedPrefillStep
    b = len(prompt)
    engine = CachedCodeGeeX(model, b, max_len, return_logits=True, fused_decode=fused)
    assert engine.fused_decode == fused
    decode = FusedDecodeStep(engine) if fused else engine
    prefill = FusedPrefillStep(engine) if fused else engine
    chunk = chunk or prompt.shape[1]

    def ints(a):
        return Tensor(np.asarray(a, np.int32))
    sampling = (Tensor(np.zeros((b, engine.sampler.candidates), np.float32)), Tensor(np.ones(b, np.float32)),
                ints(np.ones(b)), Tensor(np.full(b, 2.0, np.float32)))
    logits = None
    for lo in range(0, prompt.shape[1], chunk):
        last = np.clip(lengths - 1 - lo, 0, chunk - 1)
        part = prefill(ints(prompt[:, lo:lo + chunk]), ints(np.full(b, lo)), ints(last), *sampling).asnumpy()
        here = ((lengths - 1 >= lo) & (lengths - 1 < lo + chunk)).reshape(b, 1)
        logits = part if logits is None else np.where(here, part, logits)
    out = [logits]
    for i in range(steps):
        token = out[-1].argmax(-1).reshape(b, 1)
        last = () if fused else (ints(np.zeros(b)),)              # FusedDecodeStep takes no last_index
        out.append(decode(ints(token), ints(lengths + i), *last, *sampling).asnumpy())
    return np.stack(out), engine


@pytest.mark.parametrize("precision", [
    {},                                                                     # float32 weights
    {"weight_quant": "int8"},                                               # int8 Linears, float32 rest
    {"weight_quant": "int8", "embedding_quant": "int8", "param_dtype": "float16"},   # quantize --dtype float16
    {"weight_quant": "int8", "param_dtype": "float16"},              # ... --embedding keep: the float16 head kernel
])
def test_fused_decode_stack_equals_the_graph_path(tiny_config, ms_context, precision):
    """Prefill and decode steps with the transformer stack as one kernel (FusedPrefillStep, FusedDecodeStep,
    decode_stack.cc)
    against the graph path on the same weights: three rows of different lengths, prefilled whole or in two chunks
    (the graph path chunked too), six greedy steps; logits within float32 rounding, the same tokens, and the keys
    and values the kernel writes into the caches in place equal the graph's scatter."""
    from codegeex_ms.model import CodeGeeX
    model = random_weights(CodeGeeX(tiny_config.replace(precision=precision)))
    assert model.fused_decode
    rng = np.random.default_rng(1)
    prompt, lengths = rng.integers(0, 8000, (3, 8)).astype(np.int32), np.array([5, 7, 3], np.int32)
    graph, graph_engine = cached_logits(model, False, prompt, lengths, steps=6)
    for fused_run in (cached_logits(model, True, prompt, lengths, steps=6),      # whole-prompt fused prefill
                      cached_logits(model, True, prompt, lengths, steps=6, chunk=4),   # chunked fused prefill
                      cached_logits(model, False, prompt, lengths, steps=6, chunk=4)):  # chunked graph prefill
        fused, fused_engine = fused_run
        np.testing.assert_allclose(fused, graph, rtol=1e-5, atol=1e-6)
        assert (fused.argmax(-1) == graph.argmax(-1)).all()
        for a, b in zip(list(graph_engine.key_caches) + list(graph_engine.value_caches),
                        list(fused_engine.key_caches) + list(fused_engine.value_caches)):
            np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("heads", [8, 2, 3])
def test_fused_decode_attention_over_long_caches(tiny_config, ms_context, heads):
    """A decode step's attention in the kernel (the AVX-512 path for head sizes of 16 to 256 floats in steps of 16,
    where the CPU has it; the portable path for the others) against the graph path: head sizes 16, 64 and 42 (hidden
    128 or 126), rows at positions past 16 so that the 16-wide loops and their tails both run, int8 Linears."""
    from codegeex_ms.model import CodeGeeX
    hidden = 126 if heads == 3 else 128
    cfg = tiny_config.replace(model={"hidden_size": hidden, "num_heads": heads, "ffn_hidden_size": 4 * hidden},
                              precision={"weight_quant": "int8"})
    model = random_weights(CodeGeeX(cfg))
    prompt = np.random.default_rng(2).integers(0, 8000, (2, 40)).astype(np.int32)
    lengths = np.array([37, 21], np.int32)
    graph, _ = cached_logits(model, False, prompt, lengths, steps=5, max_len=96)
    fused, _ = cached_logits(model, True, prompt, lengths, steps=5, max_len=96)
    np.testing.assert_allclose(fused, graph, rtol=1e-5, atol=1e-6)
    assert (fused.argmax(-1) == graph.argmax(-1)).all()


@pytest.mark.parametrize("precision", [{"activation_quant": "int8", "weight_quant": "int8"},
                                       {"compute_dtype": "float16"}, {"param_dtype": "float16"}])
def test_fused_decode_only_where_the_kernel_computes_the_same(tiny_config, ms_context, precision):
    """int8 activations, float16 compute and float16 Linear weights keep the graph path (the kernel takes float32
    activations and int8 or float32 weights); so does a model built with the kernels switched off."""
    from codegeex_ms.model import CodeGeeX
    assert not CodeGeeX(tiny_config.replace(precision=precision)).fused_decode
    with kernels.disabled():
        assert not CodeGeeX(tiny_config).fused_decode


@pytest.mark.parametrize("b, width, vocab, k", [(6, 52224, 50400, 1024), (3, 300, 257, 1), (8, 64, 64, 64),
                                                (16, 1000, 999, 17)])
def test_sampler_kernel_draws_what_the_mindspore_sampler_draws(ms_context, b, width, vocab, k):
    """The sampler kernel (sampler.cc) against the Sampler's MindSpore path on the same logits and noise: the same
    ids for greedy rows (equal logits: the lowest index, as MindSpore's TopK orders ties), temperature, top-k and
    top-p rows; padding columns never drawn."""
    from mindspore import Tensor
    from codegeex_ms.generation import Sampler
    rng = np.random.default_rng(k)
    x = (3 * rng.standard_normal((b, width))).astype(np.float32)
    x[0, 3:9] = x[0].max() + 1                                     # ties at the top of a greedy row
    x[:, vocab:] = 100.0                                           # padding columns never count
    noise = rng.uniform(1e-6, 1.0, (b, k)).astype(np.float32)
    noise[0] = np.exp(-1.0)                                        # the greedy noise
    temperature = rng.uniform(0.3, 1.5, b).astype(np.float32)
    top_k = rng.integers(1, k + 1, b).astype(np.int32)
    top_p = rng.choice(np.array([0.5, 0.9, 0.95, 2.0], np.float32), b)
    temperature[0], top_k[0], top_p[0] = 1.0, 1, 2.0
    top_k[1::2] = 1                                                # top-1 under random noise: the highest logit
    inputs = [Tensor(a) for a in (x, noise, temperature, top_k, top_p)]
    fused = Sampler(vocab, k)
    assert fused.kernel is not None
    with kernels.disabled():
        graph = Sampler(vocab, k)
    assert graph.kernel is None
    ids, want = fused(*inputs).asnumpy(), graph(*inputs).asnumpy()
    # MindSpore's TopK orders equal values by index except with k = 1 (it picked index 5 of 3..8 here): the tied
    # greedy row is compared only where it does
    compared = slice(1 if k == 1 else 0, None)
    np.testing.assert_array_equal(ids[compared], want[compared])
    assert ids[0] == 3 and (ids < vocab).all()
    np.testing.assert_array_equal(ids[1::2], x[1::2, :vocab].argmax(-1))
    if k > 1:                                                      # draws differ between rows: not all greedy
        assert len(set(ids.tolist())) > 1


def test_fused_decode_refuses_a_position_outside_the_cache(tiny_config, ms_context):
    """The stack kernel writes the cache at each row's position: one at or past the cache's end is an error
    (MindSpore raises on the kernel's return code), never a write outside the Parameter."""
    from mindspore import Tensor
    from codegeex_ms.generation import CachedCodeGeeX, FusedDecodeStep
    from codegeex_ms.model import CodeGeeX
    engine = FusedDecodeStep(CachedCodeGeeX(random_weights(CodeGeeX(tiny_config)), 1, 64, return_logits=True))

    def ints(a):
        return Tensor(np.asarray(a, np.int32))
    sampling = (Tensor(np.zeros((1, engine.sampler.candidates), np.float32)), Tensor(np.ones(1, np.float32)),
                ints([1]), Tensor(np.full(1, 2.0, np.float32)))
    assert np.isfinite(engine(ints([[1]]), ints([63]), *sampling).asnumpy()).all()
    with pytest.raises(RuntimeError, match="decode_stack_f32"):
        engine(ints([[1]]), ints([64]), *sampling)


def test_package_data_ships_every_kernel_source():
    """setup.cfg's package data must match every C++ file the library is built from (an installed, non-editable
    package otherwise cannot build its kernels)."""
    import configparser
    from fnmatch import fnmatch
    from codegeex_ms import kernels
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    patterns = [p.strip() for p in setup["options.package_data"]["codegeex_ms.kernels"].split(",")]
    for path in kernels.SOURCES + kernels.HEADERS:
        assert path.is_file(), path
        assert any(fnmatch(path.name, p) for p in patterns), f"{path.name} is not in setup.cfg's package data"
