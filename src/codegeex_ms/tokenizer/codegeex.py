"""The CodeGeeX tokenizer, id for id the original's.

GPT-J byte-level BPE (50,257 tokens) + 143 added ``<|extratoken_k|>`` tokens (ids 50256+k). Before BPE,
runs of 2..10 spaces become ``<|extratoken_{8+n}|>`` (ids 50266..50274), replacing the longest runs first
exactly as the original ``encode_whitespaces`` does with ``str.replace`` (so 23 spaces -> 10, 10, 3 and a
leftover single space stays a space that BPE merges into the next word). No BOS/EOS is added.

The BPE itself runs in the Rust ``tokenizers`` library; ``encode_batch`` spreads a batch over all cores.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import ByteTableTokenizer, TokenizerError

EOS_ID = 50256
WHITESPACE_START_ID = 10          # <|extratoken_10|> is two spaces
WHITESPACE_MAX_RUN = 10           # ... <|extratoken_18|> is ten spaces


def whitespace_token(run: int) -> str:
    return f"<|extratoken_{WHITESPACE_START_ID + run - 2}|>"


def encode_whitespaces(text: str) -> str:
    """Replace space runs by their extra tokens, longest first (the original's order and semantics)."""
    for run in range(WHITESPACE_MAX_RUN, 1, -1):
        text = text.replace(" " * run, whitespace_token(run))
    return text


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


class CodeGeeXTokenizer(ByteTableTokenizer):
    kind = "codegeex"
    files = ("vocab.json", "merges.txt", "added_tokens.json")

    def __init__(self, directory: str | Path):
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
        self.directory = Path(directory)
        vocab_file, merges_file = self.directory / "vocab.json", self.directory / "merges.txt"
        added_file = self.directory / "added_tokens.json"
        for f in (vocab_file, merges_file, added_file):
            if not f.is_file():
                raise TokenizerError(f"CodeGeeX tokenizer file {f} is missing")
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        added = json.loads(added_file.read_text(encoding="utf-8"))
        expected = {f"<|extratoken_{k}|>": EOS_ID + k for k in range(1, len(added) + 1)}
        if added != expected or len(vocab) != EOS_ID + 1:
            raise TokenizerError(f"{added_file} / {vocab_file}: expected {EOS_ID + 1} BPE tokens and added tokens "
                                 f"<|extratoken_k|> = {EOS_ID}+k; found {len(vocab)} BPE tokens and "
                                 f"{len(added)} added tokens not in that order")
        if vocab.get("<|endoftext|>") != EOS_ID:
            raise TokenizerError(f"{vocab_file}: <|endoftext|> must have id {EOS_ID}")

        self._tk = Tokenizer(models.BPE.from_file(str(vocab_file), str(merges_file)))
        self._tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        self._tk.decoder = decoders.ByteLevel()
        self._tk.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
        self._tk.add_tokens([AddedToken(t, normalized=False) for t in sorted(added, key=added.get)])
        if self._tk.get_vocab_size(with_added_tokens=True) != EOS_ID + 1 + len(added):
            raise TokenizerError(f"{self.directory}: the added tokens did not get ids {EOS_ID + 1}..")

        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        table = [b""] * (EOS_ID + 1 + len(added))
        for token, i in vocab.items():
            table[i] = bytes(byte_of[c] for c in token)
        for token, i in added.items():
            table[i] = token.encode()
        for run in range(2, WHITESPACE_MAX_RUN + 1):
            table[added[whitespace_token(run)]] = b" " * run
        self._bytes = table
        self.eos_id = EOS_ID
        self.vocab_size = len(table)

    def encode(self, text: str) -> list[int]:
        return self._tk.encode(encode_whitespaces(text), add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many texts in parallel on all cores (the Rust library's thread pool)."""
        encodings = self._tk.encode_batch([encode_whitespaces(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encodings]
