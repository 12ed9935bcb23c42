"""Tokenizers: the exact CodeGeeX BPE, or a sentencepiece model trained by ``data_prep/train_tokenizer.py``.

``load(directory)`` picks the kind from what the directory holds:

    vocab.json + merges.txt (+ added_tokens.json)   -> CodeGeeXTokenizer   (GPT-J BPE + whitespace tokens)
    tokenizer.model                                   -> SentencePieceTokenizer

Both offer ``encode(text) -> list[int]``, ``encode_batch(texts)`` (all cores), ``decode(ids) -> str``,
``eos_id``, ``vocab_size``, ``identity()`` (kind + content hash, for manifests) and ``stream_decoder()``
for printing tokens as they are generated without garbling multi-byte characters.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import ByteTableTokenizer, StreamDecoder, TokenizerError

__all__ = ["ByteTableTokenizer", "StreamDecoder", "TokenizerError", "load"]


def load(directory: str | os.PathLike):
    """Load the tokenizer stored in ``directory`` (see the module docstring for what it may hold)."""
    path = Path(directory)
    if not path.is_dir():
        raise TokenizerError(f"tokenizer directory {path} does not exist")
    if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        from .codegeex import CodeGeeXTokenizer
        return CodeGeeXTokenizer(path)
    if (path / "tokenizer.model").is_file():
        from .spm import SentencePieceTokenizer
        return SentencePieceTokenizer(path)
    raise TokenizerError(f"{path} holds no tokenizer: expected vocab.json + merges.txt (+ added_tokens.json) "
                         f"for the CodeGeeX BPE, or tokenizer.model for a sentencepiece tokenizer")
