"""The embedded default model (checkpoints/codegeex-mini): loads, matches its recorded config and tokenizer, and
reproduces its recorded completions (greedy, and the README's run command)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "checkpoints" / "codegeex-mini"


@pytest.fixture(scope="module")
def card():
    path = FOLDER / "card.json"
    assert path.is_file(), f"{path} is missing: the embedded model is part of the repository"
    return json.loads(path.read_text())


def test_loads_with_its_recorded_config_and_tokenizer(card, ms_context):
    import codegeex_ms
    from codegeex_ms.checkpoint import tokenizer_path
    from codegeex_ms.config import load_config
    from codegeex_ms.tokenizer import load
    model = codegeex_ms.load(FOLDER)
    assert model.config.model == load_config(REPO / "model_configs" / "codegeex_mini.yaml").model
    assert model.config.precision.weight_quant == card["weight_quant"] == "int8"
    tok = load(tokenizer_path(FOLDER))
    assert Path(tokenizer_path(FOLDER)) == FOLDER / "tokenizer"       # bundled: the folder is self-contained
    assert tok.identity()["sha256"] == card["tokenizer_sha256"]
    assert tok.vocab_size == model.config.model.vocab_size and tok.eos_id == model.config.model.eod_token_id
    size = (FOLDER / "model.safetensors").stat().st_size
    assert size == card["weights_bytes"] and size < 16 * 2**20


def test_recorded_greedy_completion(card, ms_context):
    import codegeex_ms
    from codegeex_ms.checkpoint import tokenizer_path
    from codegeex_ms.generation import Generator, SamplingConfig
    from codegeex_ms.tokenizer import load
    example = card["greedy_example"]
    tok = load(tokenizer_path(FOLDER))
    generator = Generator(codegeex_ms.load(FOLDER), tok, batch_size=1, max_len=256)
    result = generator.generate(tok.encode(example["prompt"]),
                                SamplingConfig(max_new_tokens=example["max_new_tokens"], greedy=True,
                                               language=example["language"]))
    assert result.completions[0] == example["completion"]


def test_readme_run_command_uses_the_embedded_model(card):
    run = card["readme_run"]
    result = subprocess.run([sys.executable, str(REPO / "infer.py"), *run["argv"], "--json", "--max-new-tokens", "8"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["prompt"] == "# language: Python\ndef fibonacci(n):\n" and len(out["completions"]) == 1
    assert out["timings"]["generated_tokens"] >= 1
