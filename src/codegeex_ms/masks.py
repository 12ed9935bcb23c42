"""Attention masks and position ids for packed pre-training samples (as the original CodeGeeX).

Pure numpy, shared by data preparation, training and the tests.
"""
from __future__ import annotations

import numpy as np


def eod_reset_masks(tokens: np.ndarray, eod_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Position ids and attention masks that restart after every EOD token.

    After an EOD at index i, later tokens may not attend to positions <= i and their position ids restart
    from 0, exactly as the original ``get_ltor_masks_and_position_ids(reset_position_ids=True,
    reset_attention_mask=True)``. The EOD token itself still belongs to the document it ends.

    Args:
        tokens: ``[b, s]`` integer token ids (the model inputs, i.e. the first s tokens of each window).
        eod_id: the end-of-document id (50256 for CodeGeeX).

    Returns:
        ``position_ids`` ``[b, s]`` int32 and ``attention_mask`` ``[b, s, s]`` uint8 (1 = may attend).
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, seq], got shape {tokens.shape}")
    b, s = tokens.shape
    # Document index of each position: it increases right *after* each EOD.
    is_eod = tokens == eod_id
    doc = np.zeros((b, s), np.int64)
    doc[:, 1:] = np.cumsum(is_eod[:, :-1], axis=1)
    # Position id = distance from the start of the position's document.
    idx = np.broadcast_to(np.arange(s), (b, s))
    starts = np.where(np.concatenate([np.ones((b, 1), bool), is_eod[:, :-1]], axis=1), idx, 0)
    doc_start = np.maximum.accumulate(starts, axis=1)
    position_ids = (idx - doc_start).astype(np.int32)
    causal = np.tril(np.ones((s, s), bool))
    same_doc = doc[:, :, None] == doc[:, None, :]
    return position_ids, (causal & same_doc).astype(np.uint8)


def loss_mask(tokens: np.ndarray, eod_id: int) -> np.ndarray:
    """1.0 where the *input* token is not EOD: positions whose input is EOD do not count in the loss."""
    return (np.asarray(tokens) != eod_id).astype(np.float32)
