"""What every tokenizer here shares: its error type, decoding through a table of byte strings (whole or streamed),
and the identity a manifest records."""
from __future__ import annotations

import codecs
import hashlib
from pathlib import Path
from typing import Sequence


class TokenizerError(ValueError):
    """A tokenizer directory is missing files or its files are inconsistent."""


class ByteTableTokenizer:
    """Shared decoding for tokenizers whose every id stands for a fixed byte string.

    Subclasses fill ``self._bytes`` (id -> bytes). Decoding joins the bytes and decodes UTF-8 with
    ``errors="replace"``, so any id sequence decodes, and a sequence cut mid-character is handled by
    ``stream_decoder()``.
    """
    _bytes: list[bytes]
    directory: Path
    kind: str
    files: tuple[str, ...]

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[self._check_id(token_id)]

    def _check_id(self, token_id: int) -> int:
        if not 0 <= token_id < len(self._bytes):
            raise ValueError(f"token id {token_id} is outside the vocabulary (0..{len(self._bytes) - 1})")
        return token_id

    def decode(self, ids: Sequence[int]) -> str:
        table = self._bytes
        try:
            data = b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            for i in ids:
                self._check_id(int(i))
            raise
        return data.decode("utf-8", errors="replace")

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)

    def identity(self) -> dict:
        """What a manifest records to recognise this tokenizer: kind, directory, sha256 over its files."""
        digest = hashlib.sha256()
        for name in self.files:
            digest.update(name.encode())
            digest.update((self.directory / name).read_bytes())
        return {"kind": self.kind, "path": str(self.directory.resolve()), "sha256": digest.hexdigest(),
                "vocab_size": self.vocab_size, "eos_id": self.eos_id}


class StreamDecoder:
    """Incremental decoding: ``push(id)`` returns the text completed by that token (possibly ""), holding back
    the bytes of a character that is not complete yet; ``flush()`` returns the rest."""

    def __init__(self, tokenizer: ByteTableTokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.token_bytes(int(token_id)))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
