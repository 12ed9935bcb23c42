"""The MindSpore model: parameter layout, shapes, masks, dropout, precision."""
from __future__ import annotations

import numpy as np
import pytest

from codegeex_ms.layout import parameter_shapes


@pytest.fixture(scope="module")
def tiny_model(tiny_config, ms_context):
    from codegeex_ms.model import CodeGeeX
    model = CodeGeeX(tiny_config)
    model.set_train(False)
    return model


def _logits(model, tokens, *extra):
    import mindspore as ms
    return model(ms.Tensor(np.asarray(tokens), ms.int32), *extra).asnumpy()


def test_parameters_are_the_layout(tiny_model, tiny_config):
    got = {p.name: tuple(p.shape) for p in tiny_model.get_parameters()}
    assert got == parameter_shapes(tiny_config.model)


def test_decode_kernel_inputs_follow_the_layer_table(tiny_config, ms_context):
    """The fused decode kernel takes each layer's modules in the layer table's order (LayerNorm 1, query, key,
    value, dense, LayerNorm 2, h -> 4h, 4h -> h), each Linear as weight, scale, bias when int8."""
    from codegeex_ms.config import apply_overrides
    from codegeex_ms.layout import LAYER_MODULES, LayerNormSpec, LinearSpec
    from codegeex_ms.model import CodeGeeX
    model = CodeGeeX(apply_overrides(tiny_config, ["precision.weight_quant=int8"]))
    kinds = {LinearSpec: ("weight", "weight_scale", "bias"), LayerNormSpec: ("weight", "bias")}
    expected = [f"top_query_layer.{spec.module}.{kind}" for spec in LAYER_MODULES for kind in kinds[type(spec)]]
    assert [p.name for p in model.top_query_layer.decode_parameters()] == expected
    assert expected[2:5] == ["top_query_layer.attention.query.weight", "top_query_layer.attention.query.weight_scale",
                             "top_query_layer.attention.query.bias"]


def test_forward_shape_and_dtype(tiny_model):
    logits = _logits(tiny_model, np.arange(2 * 7).reshape(2, 7))
    assert logits.shape == (2, 7, 52224) and logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_causal_future_tokens_do_not_change_the_past(tiny_model):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 50400, size=(1, 12))
    b = a.copy()
    b[0, 8:] = rng.integers(0, 50400, size=4)
    la, lb = _logits(tiny_model, a), _logits(tiny_model, b)
    np.testing.assert_allclose(la[0, :8], lb[0, :8], atol=1e-5)
    assert np.abs(la[0, 8:] - lb[0, 8:]).max() > 1e-4


def test_explicit_causal_mask_equals_default(tiny_model):
    import mindspore as ms
    tokens = np.arange(10).reshape(1, 10) + 100
    positions = ms.Tensor(np.arange(10, dtype=np.int32).reshape(1, 10))
    mask = ms.Tensor(np.tril(np.ones((1, 10, 10), np.float32)))
    np.testing.assert_allclose(_logits(tiny_model, tokens, positions, mask), _logits(tiny_model, tokens), atol=1e-6)


def test_dropout_only_in_training(tiny_config, ms_context):
    from codegeex_ms.model import CodeGeeX
    model = CodeGeeX(tiny_config.replace(model={"hidden_dropout": 0.1, "attention_dropout": 0.1}))
    tokens = np.arange(16).reshape(2, 8)
    model.set_train(False)
    first, second = _logits(model, tokens), _logits(model, tokens)
    np.testing.assert_array_equal(first, second)
    model.set_train(True)
    assert np.abs(_logits(model, tokens) - first).max() > 1e-4


def test_fp16_compute_runs_on_cpu_close_to_fp32(tiny_model, tiny_config, ms_context):
    from codegeex_ms.model import CodeGeeX
    half = CodeGeeX(tiny_config.replace(precision={"compute_dtype": "float16"}))
    for p, q in zip(half.get_parameters(), tiny_model.get_parameters()):
        p.set_data(q.data.copy())
    half.set_train(False)
    tokens = np.arange(12).reshape(1, 12) + 7
    full, low = _logits(tiny_model, tokens), _logits(half, tokens)
    assert low.dtype == np.float32
    assert np.abs(low - full).max() < 5e-2 * max(1.0, np.abs(full).max())


def test_bf16_model_fails_clearly_on_cpu(tiny_config, ms_context):
    from codegeex_ms.config import ConfigError
    from codegeex_ms.model import CodeGeeX
    with pytest.raises(ConfigError, match="bfloat16 cannot run on CPU"):
        CodeGeeX(tiny_config.replace(precision={"compute_dtype": "bfloat16"}))


def test_masks_reset_after_eod():
    from codegeex_ms.masks import eod_reset_masks, loss_mask
    eod = 9
    tokens = np.array([[1, 2, eod, 3, 4, eod, 5]])
    positions, mask = eod_reset_masks(tokens, eod)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 2, 0]]
    assert mask[0, 2].tolist() == [1, 1, 1, 0, 0, 0, 0]        # the EOD belongs to its document
    assert mask[0, 4].tolist() == [0, 0, 0, 1, 1, 0, 0]
    assert mask[0, 6].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert loss_mask(tokens, eod).tolist() == [[1, 1, 0, 1, 1, 0, 1]]
    with pytest.raises(ValueError, match=r"\[batch, seq\]"):
        eod_reset_masks(np.array([1, 2, 3]), eod)
