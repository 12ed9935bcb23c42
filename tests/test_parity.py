"""Numerical parity with the reference PyTorch CodeGeeX on the same (tiny, random) weights.

The reference model is built, saved in the released layout (``{"module": {"language_model": ...}}``),
converted with ``python -m codegeex_ms.convert`` and both are run in fp32.
"""
from __future__ import annotations

import numpy as np
import pytest

from reference_codegeex import random_reference_model, reference_inference_module, reference_logits, torch

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference(tiny_config):
    return random_reference_model(tiny_config.model, seed=0)


@pytest.fixture(scope="module")
def converted(reference, tiny_config, tmp_path_factory, ms_context):
    """Our model loaded from the converted release-layout checkpoint."""
    import codegeex_ms
    from codegeex_ms.convert import main
    folder = tmp_path_factory.mktemp("parity")
    released = folder / "codegeex_tiny.pt"
    torch.save({"module": reference.state_dict_for_save_checkpoint()}, released)
    assert main([str(released), str(folder / "ours"), "--config", "codegeex_tiny"]) == 0
    return codegeex_ms.load(folder / "ours")


def _ours(model, tokens, position_ids=None, attention_mask=None):
    import mindspore as ms
    args = [ms.Tensor(tokens, ms.int32)]
    if position_ids is not None:
        args += [ms.Tensor(position_ids, ms.int32), ms.Tensor(attention_mask, ms.float32)]
    return model(*args).asnumpy()


def test_logits_match_reference_causal(reference, converted):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 50400, size=(2, 24))
    expected = reference_logits(reference, tokens)
    got = _ours(converted, tokens)
    assert got.shape == (2, 24, 52224)
    assert np.abs(got - expected).max() <= TOLERANCE


def test_eod_reset_masks_and_logits_match_reference(reference, converted):
    from codegeex_ms.masks import eod_reset_masks
    eod = 50256
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 50000, size=(2, 20))
    tokens[0, [4, 11]] = eod
    tokens[1, [0, 19]] = eod
    ref_inference = reference_inference_module()
    ref_blocked, ref_positions = ref_inference.get_ltor_masks_and_position_ids(
        torch.as_tensor(tokens), eod, reset_position_ids=True, reset_attention_mask=True)
    position_ids, mask = eod_reset_masks(tokens, eod)
    np.testing.assert_array_equal(position_ids, ref_positions.numpy())
    np.testing.assert_array_equal(mask, (~ref_blocked[:, 0]).numpy().astype(np.uint8))

    expected = reference_logits(reference, tokens, position_ids, mask)
    got = _ours(converted, tokens, position_ids, mask)
    assert np.abs(got - expected).max() <= TOLERANCE
    # The reset really changes the result (the test would notice a model that ignored the mask).
    assert np.abs(got - _ours(converted, tokens)).max() > 1e-3


def test_top_query_embedding_is_live(reference, converted, tmp_path):
    """Perturbing the top-query table changes the logits in both implementations the same way."""
    import codegeex_ms
    from codegeex_ms.convert import main
    with torch.no_grad():
        table = reference.language_model.topQueryEmbedding.top_query_embeddings.weight
        saved = table.clone()
        table.add_(0.5)
    try:
        torch.save({"module": reference.state_dict_for_save_checkpoint()}, tmp_path / "p.pt")
        expected = reference_logits(reference, np.array([[5, 6, 7, 8]]))
    finally:
        with torch.no_grad():
            table.copy_(saved)
    assert main([str(tmp_path / "p.pt"), str(tmp_path / "ours"), "--config", "codegeex_tiny"]) == 0
    got = _ours(codegeex_ms.load(tmp_path / "ours"), np.array([[5, 6, 7, 8]]))
    assert np.abs(got - expected).max() <= TOLERANCE
    assert np.abs(got - _ours(converted, np.array([[5, 6, 7, 8]]))).max() > 1e-3
