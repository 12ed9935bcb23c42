"""A sentencepiece tokenizer for code, trained on a corpus by ``data_prep/train_tokenizer.py``.

Byte-fallback BPE with no normalisation (so decode inverts encode), whitespace runs of 2..10 spaces and
every CodeGeeX language-tag line as user-defined symbols (always one token each), ``<|endoftext|>`` as EOS.
Limitation of sentencepiece: the character U+2581 ("▁") in the input decodes as a space.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Iterator

from ..fileio import atomic_write_bytes
from ..languages import LANGUAGE_TAGS
from .base import ByteTableTokenizer, TokenizerError

MODEL_FILE = "tokenizer.model"
EOS_PIECE = "<|endoftext|>"
SPACE = "\u2581"          # sentencepiece's visible space


def user_defined_symbols() -> list[str]:
    """Space runs (longest match wins, like CodeGeeX's whitespace tokens) and the language-tag lines."""
    runs = [SPACE * n for n in range(2, 11)]
    tags = sorted({tag.replace(" ", SPACE) for tag in LANGUAGE_TAGS.values()})
    return runs + tags


def train_sentencepiece(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike,
                        max_sentences: int = 2_000_000, seed: int = 0) -> Path:
    """Train on an iterable of documents (already tag-prefixed) and write ``out_dir/tokenizer.model`` atomically."""
    import sentencepiece as spm
    symbols = user_defined_symbols()
    floor = len(symbols) + 256 + 2 + 16
    if vocab_size < floor:
        raise TokenizerError(f"--vocab-size {vocab_size} is too small: the byte pieces, special tokens and "
                             f"{len(symbols)} user-defined symbols alone need {floor - 16}; use at least {floor}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
        user_defined_symbols=symbols, max_sentence_length=1 << 16, input_sentence_size=max_sentences,
        shuffle_input_sentence=True, seed_sentencepiece_size=1_000_000, character_coverage=0.9995,
        unk_id=0, eos_id=1, bos_id=-1, pad_id=-1, eos_piece=EOS_PIECE, num_threads=os.cpu_count() or 1,
        minloglevel=2)
    atomic_write_bytes(out / MODEL_FILE, model.getvalue())
    return out / MODEL_FILE


def chunk_document(text: str, max_bytes: int = 1 << 15) -> Iterator[str]:
    """Split a long document at line ends into pieces under sentencepiece's sentence-length limit."""
    if len(text.encode()) <= max_bytes:
        yield text
        return
    piece, size = [], 0
    for line in text.splitlines(keepends=True):
        n = len(line.encode())
        if piece and size + n > max_bytes:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(line[: max_bytes // 4] if n > max_bytes else line)
        size += min(n, max_bytes)
    if piece:
        yield "".join(piece)


class SentencePieceTokenizer(ByteTableTokenizer):
    kind = "sentencepiece"
    files = (MODEL_FILE,)

    def __init__(self, directory: str | Path):
        import sentencepiece as spm
        self.directory = Path(directory)
        path = self.directory / MODEL_FILE
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"{path}: not a sentencepiece model ({e})") from None
        self.eos_id = self._sp.eos_id()
        if self.eos_id < 0:
            raise TokenizerError(f"{path} has no EOS piece; train it with data_prep/train_tokenizer.py")
        self.vocab_size = self._sp.get_piece_size()
        table = []
        for i in range(self.vocab_size):
            piece = self._sp.id_to_piece(i)
            if self._sp.is_byte(i):
                table.append(bytes([int(piece[3:5], 16)]))           # "<0xAB>"
            elif self._sp.is_control(i):
                table.append(b"")
            elif self._sp.is_unknown(i):
                table.append("\ufffd".encode())
            else:
                table.append(piece.replace(SPACE, " ").encode())
        self._bytes = table
        self._threads = os.cpu_count() or 1

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(list(texts), num_threads=self._threads)
