"""The float head read through an int8 copy first (kernels/screened_head.cc): every logit a sampler can draw is the
float32 or float16 head kernel's own, bit for bit, so a decode step draws the same tokens as with the whole table."""
from __future__ import annotations

import numpy as np
import pytest

from codegeex_ms import kernels
from test_kernels import random_weights

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="the kernels could not be built here (g++?)")


def head_inputs(rng, b: int, h: int, rows: int, vocab: int):
    """x [b, h] and a float32 table [rows, h] with near-ties: for each row of x, eight rows along it that lead
    every other by far and differ among themselves far less than the int8 copy's error; rows that repeat others up
    to tiny changes, an exact duplicate, a zero row, and rows of very different scales."""
    x = rng.standard_normal((b, h)).astype(np.float32)
    table = (rng.standard_normal((rows, h)) * 0.05).astype(np.float32)
    for r in range(b):
        along = x[r] / np.linalg.norm(x[r])
        table[40 + 8 * r:48 + 8 * r] = along + rng.standard_normal((8, h)).astype(np.float32) * 1e-3
    table[10:20] = table[:10] + (rng.standard_normal((10, h)) * 1e-5).astype(np.float32)
    table[20] = table[0]
    table[21] = 0.0
    table[22:30] *= 20.0
    table[vocab:] = 1.0                                                # padding rows: never candidates
    return x, table


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("b, h, rows, vocab, candidates", [(3, 64, 300, 257, 16), (2, 100, 1000, 999, 1000),
                                                           (5, 128, 2000, 1900, 64)])
def test_every_drawable_logit_is_the_float_heads(ms_context, b, h, rows, vocab, candidates, dtype):
    """For each row and each top_k from 1 to all candidates: the top_k best logits of the whole head (the float32
    or float16 kernel; ties by index) are present, with the same bits, in the screened output; every other logit it
    gives is the whole head's too, and the rest are -inf (padding rows always)."""
    from mindspore import Tensor
    from codegeex_ms.checkpoint import quantize_rows
    rng = np.random.default_rng(rows)
    x, table = head_inputs(rng, b, h, rows, vocab)
    table = table.astype(dtype)
    screen, scale = quantize_rows(table)
    whole_head = kernels.f32_linear_op() if dtype == np.float32 else kernels.f16_linear_op()
    full = whole_head(Tensor(x), Tensor(table)).asnumpy()
    noise = Tensor(np.full((b, candidates), np.exp(-1.0), np.float32))
    op = kernels.screened_head_op()
    for top_k in sorted({1, 2, 5, candidates // 2, candidates}):
        got = op(Tensor(x), Tensor(screen), Tensor(scale), Tensor(table), Tensor(np.array([vocab], np.int32)),
                 Tensor(np.full(b, top_k, np.int32)), noise).asnumpy()
        assert got.shape == full.shape and np.isneginf(got[:, vocab:]).all()
        computed = np.isfinite(got)
        np.testing.assert_array_equal(got[computed], full[computed])
        for r in range(b):
            best = np.lexsort((np.arange(vocab), -full[r, :vocab]))[:top_k]
            assert computed[r, best].all(), (r, top_k)
        if top_k == 1:                                                 # the screen reads few float32 rows
            assert computed.sum(1).max() < vocab // 4


def test_the_bound_holds_where_the_int8_copy_ranks_the_wrong_row_first(ms_context):
    """Two rows built so that the int8 copy's errors are near their worst case with opposite signs (each element
    0.49 steps of the scale off its int8 value, along x's signs): the int8 logits rank B first, the float32 ones A.
    The screened head must still give A its float32 logit (a bound 10% short of the right one drops it)."""
    from mindspore import Tensor
    from codegeex_ms.checkpoint import quantize_rows
    rng = np.random.default_rng(7)
    h, rows, vocab = 256, 512, 500
    x = rng.standard_normal((1, h)).astype(np.float32)
    sign, size = np.sign(x[0]), np.abs(x[0])
    step = 0.01
    # |x|_1 without the largest element (m, where both rows hold 127 steps, which fixes their scale at `step`);
    # A = q + 0.49 steps along x (q = 100 steps), B = q + 1 step along x but for the smallest elements (their
    # |x| summing to D), minus 0.49 steps: exact logits A - B = step (D - 0.02 l1), int8 ones B - A = step (l1 - D)
    m = np.argmax(size)
    l1 = size.sum() - size[m]
    order = [k for k in np.argsort(size) if k != m]
    dropped = order[:np.searchsorted(np.cumsum(size[order]), 0.05 * l1) + 1]          # D just over 0.05 l1
    q_a = 100 * sign
    q_b = q_a + sign
    q_b[dropped] -= sign[dropped]
    a, b = step * (q_a + 0.49 * sign), step * (q_b - 0.49 * sign)
    a[m] = b[m] = 127 * step * sign[m]
    table = (rng.standard_normal((rows, h)) * 0.05).astype(np.float32)
    table[3], table[9] = a.astype(np.float32), b.astype(np.float32)
    screen, scale = quantize_rows(table)
    full = kernels.f32_linear_op()(Tensor(x), Tensor(table)).asnumpy()[0]
    int8 = kernels.int8_linear_op()(Tensor(x), Tensor(screen), Tensor(scale)).asnumpy()[0]
    assert full[:vocab].argmax() == 3 and int8[:vocab].argmax() == 9            # the copy ranks them wrongly
    got = kernels.screened_head_op()(Tensor(x), Tensor(screen), Tensor(scale), Tensor(table),
                                     Tensor(np.array([vocab], np.int32)), Tensor(np.ones(1, np.int32)),
                                     Tensor(np.full((1, 8), np.exp(-1.0), np.float32))).asnumpy()[0]
    assert got[3] == full[3] and np.isfinite(got).sum() < 10


@pytest.mark.parametrize("precision", [{}, {"weight_quant": "int8", "param_dtype": "float16"}])
def test_decode_steps_draw_what_the_whole_float_head_draws(tiny_config, ms_context, precision):
    """A fused decode step of a float32-head model, and of an int8 one with a float16 head (``quantize --dtype
    float16 --embedding keep``), with the screened head against the same step with the head kernel over the whole
    table: the same ids for greedy, temperature, top-k and top-p rows over several steps."""
    import mindspore as ms
    from mindspore import Tensor
    from codegeex_ms.generation import CachedCodeGeeX, FusedDecodeStep
    from codegeex_ms.model import CodeGeeX
    model = random_weights(CodeGeeX(tiny_config.replace(precision=precision)))
    b = 6
    screened = FusedDecodeStep(CachedCodeGeeX(model, b, 64))
    whole = FusedDecodeStep(CachedCodeGeeX(model, b, 64, cache_name="whole_cache"), screened_head=False)
    assert screened.screened and not whole.screened
    assert screened.word_table.dtype == (ms.float16 if precision else ms.float32)
    rng = np.random.default_rng(3)
    k = screened.sampler.candidates
    temperature = np.array([1.0, 0.8, 1.2, 0.5, 1.0, 0.9], np.float32)
    top_k = np.array([1, k, 40, k, 5, 1], np.int32)
    top_p = np.array([2.0, 0.95, 2.0, 0.5, 0.9, 2.0], np.float32)
    tokens = rng.integers(0, 8000, (b, 1)).astype(np.int32)
    for step in range(6):
        noise = rng.uniform(1e-6, 1.0, (b, k)).astype(np.float32)
        noise[0] = np.exp(-1.0)
        inputs = [Tensor(tokens), Tensor(np.full(b, step, np.int32)), Tensor(noise), Tensor(temperature),
                  Tensor(top_k), Tensor(top_p)]
        ids = screened(*inputs).asnumpy()
        np.testing.assert_array_equal(ids, whole(*inputs).asnumpy())
        tokens = ids.reshape(b, 1)
