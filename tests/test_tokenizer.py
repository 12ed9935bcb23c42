"""The CodeGeeX tokenizer: ids equal the original's for any input; decode inverts encode; streaming decode."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from codegeex_ms import tokenizer as tokenizers_module
from codegeex_ms.tokenizer import TokenizerError


@pytest.fixture(scope="module")
def tok_dir(shared_dir):
    return shared_dir / "tokenizer" / "codegeex"


@pytest.fixture(scope="module")
def tok(tok_dir):
    return tokenizers_module.load(tok_dir)


@pytest.fixture(scope="module")
def reference(tok_dir):
    from reference_codegeex import reference_tokenizer
    return reference_tokenizer(tok_dir)


@pytest.fixture(scope="module")
def humaneval_code(shared_dir):
    """Every prompt and canonical solution of HumanEval-X: real code in six languages."""
    texts = []
    for lang in ("python", "cpp", "java", "js", "go", "rust"):
        with gzip.open(shared_dir / "datasets" / "humaneval-x" / f"humaneval_{lang}.jsonl.gz", "rt") as f:
            for line in f:
                row = json.loads(line)
                texts += [row["prompt"], row["prompt"] + row["canonical_solution"]]
    return texts


SNIPPETS = [
    "",
    "def f(x):\n    return x  # four spaces\n",
    "int main() {\n\tprintf(\"%d\\n\", 1);\n\t\treturn 0;\n}\n",
    "class A:\n        def g(self):\n            pass\n",
    "x = 1" + " " * 23 + "# 23 spaces\n" + " " * 11 + "b\n" + " " * 1 + "c" + " " * 2,
    "\t \t  \t   mixed\t indentation\n",
    "def 函数(变量):\n    return \"héllo wörld ✓ 🙂\"  # Unicode identifiers and strings\n",
    "let s = 'naïve café';\r\n    const π = 3.14;\r\n",
    "fn main() {\r\n    println!(\"{}\", \"日本語\");\r\n}\r\n",
    "// language: C++\n#include <vector>\nstd::vector<int> v{1, 2, 3};\n",
    "a<|endoftext|>b  <|endoftext|>",
    "   \n\n\n      \n",
    "'s 't 're 've 'm 'll 'd 123 4567 ... !!! ??",
    "\u00a0non-breaking\u2003em space\u200bzero width",
]


def test_known_ids(tok):
    """Ids the original CodeGeeX tokenizer gives: GPT-J BPE, runs of 2 to 10 spaces are the added tokens
    50266..50274."""
    assert tok.vocab_size == 50400 and tok.eos_id == 50256
    assert tok.encode("    return x") == [50268, 7783, 2124]
    assert tok.encode(" " * 23) == [50274, 50274, 50267]
    assert tok.encode(" " * 11 + "b") == [50274, 275]
    assert [tok.encode(" " * n)[0] for n in range(2, 11)] == list(range(50266, 50275))
    assert tok.encode("# language: Python\n") == [2, 3303, 25, 11361, 198]
    assert tok.encode("// language: C++\n") == [1003, 3303, 25, 327, 4880, 198]
    assert tok.encode("\t\n") == [197, 198]
    assert tok.encode("") == []


@pytest.mark.parametrize("text", SNIPPETS, ids=range(len(SNIPPETS)))
def test_snippets_match_reference_and_round_trip(tok, reference, text):
    assert tok.encode(text) == reference.encode_code(text)
    assert tok.decode(tok.encode(text)) == text


def test_humaneval_x_code_matches_reference(tok, reference, humaneval_code):
    for text in humaneval_code:
        ids = tok.encode(text)
        assert ids == reference.encode_code(text), text[:80]
        assert tok.decode(ids) == text
    assert tok.encode_batch(humaneval_code[:50]) == [tok.encode(t) for t in humaneval_code[:50]]


def test_one_megabyte_file(tok, reference, humaneval_code):
    text = ""
    for snippet in humaneval_code:
        text += snippet
        if len(text) > 1_000_000:
            break
    assert len(text.encode()) > 1_000_000
    ids = tok.encode(text)
    assert ids == reference.encode_code(text)
    assert tok.decode(ids) == text


def test_random_strings_match_reference(tok, reference):
    """Random mixtures of spaces, tabs, newlines, words, punctuation and multi-byte characters."""
    rng = np.random.default_rng(0)
    pieces = [" ", "  ", " " * 5, " " * 13, "\t", "\n", "\r\n", "x", "if", "return", "(", ")", ":", "'s", "1",
              "é", "世", "🙂", "<|endoftext|>", "\u00a0", ".", "_", "#"]
    for _ in range(300):
        text = "".join(rng.choice(pieces, size=rng.integers(0, 40)))
        assert tok.encode(text) == reference.encode_code(text), repr(text)
        assert tok.decode(tok.encode(text)) == text


def test_invalid_bytes_read_with_replace(tok, reference):
    raw = b"ok \xff\xfe bad \xc3 cut \xe4\xb8 end \xed\xa0\x80 surrogate\n"
    text = raw.decode("utf-8", errors="replace")
    assert "\ufffd" in text
    assert tok.encode(text) == reference.encode_code(text)
    assert tok.decode(tok.encode(text)) == text


def test_streaming_decode_keeps_multibyte_characters_whole(tok):
    text = "print('世界 🙂 café')\n    done"
    ids = tok.encode(text)
    # Byte-level BPE splits these characters over several tokens.
    assert any(not _is_valid_utf8(tok.token_bytes(i)) for i in ids)
    stream = tok.stream_decoder()
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text
    assert "\ufffd" not in "".join(pieces)


def _is_valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_decode_of_partial_character_never_fails(tok):
    ids = tok.encode("🙂")
    assert len(ids) > 1
    assert "\ufffd" in tok.decode(ids[:1])
    with pytest.raises(ValueError, match="token id 60000 is outside the vocabulary"):
        tok.decode([1, 60000])


def test_identity_is_stable(tok, tok_dir):
    a, b = tok.identity(), tokenizers_module.load(tok_dir).identity()
    assert a == b and a["kind"] == "codegeex" and len(a["sha256"]) == 64


def test_bad_directories(tmp_path, tok_dir):
    with pytest.raises(TokenizerError, match="does not exist"):
        tokenizers_module.load(tmp_path / "nope")
    with pytest.raises(TokenizerError, match="holds no tokenizer"):
        tokenizers_module.load(tmp_path)
    (tmp_path / "vocab.json").write_text((tok_dir / "vocab.json").read_text())
    (tmp_path / "merges.txt").write_text((tok_dir / "merges.txt").read_text())
    with pytest.raises(TokenizerError, match="added_tokens.json is missing"):
        tokenizers_module.load(tmp_path)
