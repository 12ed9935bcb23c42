"""Training a sentencepiece tokenizer on code: fast, exact round trip, same interface as CodeGeeX's."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from codegeex_ms import tokenizer as tokenizers_module
from codegeex_ms.languages import language_tag

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
EXT = {"python": "py", "cpp": "cpp", "java": "java", "js": "js", "go": "go", "rust": "rs"}


@pytest.fixture(scope="module")
def corpus(shared_dir, tmp_path_factory):
    """HumanEval-X solutions written out as source files, one folder per language."""
    root = tmp_path_factory.mktemp("corpus")
    for lang, ext in EXT.items():
        (root / lang).mkdir()
        with gzip.open(shared_dir / "datasets" / "humaneval-x" / f"humaneval_{lang}.jsonl.gz", "rt") as f:
            for i, line in enumerate(f):
                row = json.loads(line)
                (root / lang / f"p{i}.{ext}").write_text(row["prompt"] + row["canonical_solution"])
    (root / "notes.bin").write_bytes(b"\x00\x01")            # not code: ignored
    return root


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("spm")
    result = subprocess.run([sys.executable, str(REPO / "data_prep" / "train_tokenizer.py"), "--corpus", str(corpus),
                             "--vocab-size", "2000", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "trained a 2000-token sentencepiece tokenizer on 984 files" in result.stdout
    return out


def test_loads_through_the_common_interface(trained):
    tok = tokenizers_module.load(trained)
    assert tok.kind == "sentencepiece" and tok.vocab_size == 2000
    assert tok.decode([tok.eos_id]) == ""
    meta = json.loads((trained / "train_meta.json").read_text())
    assert meta["files_per_language"]["Python"] == 164 and meta["tokenizer"]["sha256"] == tok.identity()["sha256"]


@pytest.mark.parametrize("text", [
    "def f(x):\n    return x\n",
    "\tint a;\n\t\t  b = 1;   // tabs, then spaces\n" + " " * 23 + "deep\n",
    "  leading and trailing  ",
    "x = '世界 🙂 café'\r\nprint(x)\r\n",
    "",
])
def test_round_trip_exact(trained, text):
    tok = tokenizers_module.load(trained)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    stream = tok.stream_decoder()
    assert "".join(stream.push(i) for i in ids) + stream.flush() == text


def test_space_runs_and_tags_are_single_tokens(trained):
    tok = tokenizers_module.load(trained)
    assert len(tok.encode(" " * 10)) == 1
    assert len(tok.encode(" " * 4)) == 1
    assert len(tok.encode(language_tag("python"))) == 1
    assert len(tok.encode(language_tag("c++"))) == 1
    assert tok.encode_batch(["a  b", "c"]) == [tok.encode("a  b"), tok.encode("c")]


def test_vocab_too_small_is_explained(corpus, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "data_prep" / "train_tokenizer.py"), "--corpus", str(corpus),
                             "--vocab-size", "100", "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "--vocab-size 100 is too small" in result.stderr


def test_corpus_from_a_manifest(corpus, tmp_path):
    manifest = tmp_path / "manifest.json"
    # the shape prepare_corpus.py writes: the input trees are the --input values of the recorded command
    manifest.write_text(json.dumps({"command": ["data_prep/prepare_corpus.py", "--input", str(corpus / "go"),
                                                "--input", str(corpus / "rust"), "--seq-len", "64"]}))
    result = subprocess.run([sys.executable, str(REPO / "data_prep" / "train_tokenizer.py"), "--corpus", str(manifest),
                             "--vocab-size", "1000", "--out", str(tmp_path / "tok")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "on 328 files" in result.stdout and "2 languages" in result.stdout
