"""infer.py end to end on a tiny checkpoint: modes, JSON, streaming, errors."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from codegeex_ms.cli import UsageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def infer():
    spec = importlib.util.spec_from_file_location("infer_script", REPO / "infer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(infer, *argv):
    return infer.main(infer.parse_args(list(argv)))


def test_json_output(infer, tiny_checkpoint, capsys):
    assert run(infer, "--checkpoint", str(tiny_checkpoint), "--prompt", "def add(a, b):", "--lang", "python",
               "--max-new-tokens", "8", "--n", "2", "--seed", "3", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt"].startswith("# language: Python\ndef add(a, b):")
    assert len(out["completions"]) == 2 and len(out["finish_reasons"]) == 2
    assert {"load_s", "compile_s", "prefill_s", "decode_tokens_per_s"} <= set(out["timings"])


def test_same_seed_same_output(infer, tiny_checkpoint, capsys):
    args = ["--checkpoint", str(tiny_checkpoint), "--prompt", "int main() {", "--max-new-tokens", "6", "--json"]
    run(infer, *args, "--seed", "11")
    first = json.loads(capsys.readouterr().out)["completions"]
    run(infer, *args, "--seed", "11")
    assert json.loads(capsys.readouterr().out)["completions"] == first


def test_stream_prints_the_completion(infer, tiny_checkpoint, capsys):
    run(infer, "--checkpoint", str(tiny_checkpoint), "--prompt", "x = ", "--greedy", "--max-new-tokens", "6",
        "--stream")
    streamed = capsys.readouterr().out
    run(infer, "--checkpoint", str(tiny_checkpoint), "--prompt", "x = ", "--greedy", "--max-new-tokens", "6")
    assert streamed == capsys.readouterr().out


def test_translate_and_explain_prompts(infer, tiny_checkpoint, capsys):
    run(infer, "--checkpoint", str(tiny_checkpoint), "--mode", "translate", "--src-lang", "python",
        "--tgt-lang", "java", "--prompt", "def f():\n    return 1\n", "--max-new-tokens", "4", "--json")
    assert json.loads(capsys.readouterr().out)["prompt"] == "code translation\nPython:\ndef f():\n    return 1\nJava:\n"
    run(infer, "--checkpoint", str(tiny_checkpoint), "--mode", "explain", "--lang", "go",
        "--prompt", "func f() int {\n\treturn 1\n}", "--max-new-tokens", "4", "--json")
    assert json.loads(capsys.readouterr().out)["prompt"].endswith("// Explain the code line by line\n// ")


def test_errors_are_clear(infer, tiny_checkpoint, capsys):
    base = ["--checkpoint", str(tiny_checkpoint)]
    with pytest.raises(UsageError, match="the prompt is empty"):
        run(infer, *base, "--prompt", "   ")
    with pytest.raises(UsageError, match="needs --src-lang and --tgt-lang"):
        run(infer, *base, "--mode", "translate", "--prompt", "x")
    with pytest.raises(UsageError, match="unknown language 'klingon'"):
        run(infer, *base, "--prompt", "x", "--lang", "klingon")
    with pytest.raises(UsageError, match=r"the prompt is \d+ tokens; with --max-new-tokens 8 only 248 fit"):
        run(infer, *base, "--prompt", "word " * 400, "--max-new-tokens", "8")
    with pytest.raises(UsageError, match="--stream prints one sample"):
        run(infer, *base, "--prompt", "x", "--stream", "--n", "2")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:           # rejected at parse time
        run(infer, *base, "--prompt", "x", "--temperature", "0")
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --temperature: must be > 0, got 0")


def test_truncate_left_keeps_the_end(infer, tiny_checkpoint, capsys):
    assert run(infer, "--checkpoint", str(tiny_checkpoint), "--prompt", "word " * 400 + "end", "--max-new-tokens", "8",
               "--truncate-left", "--greedy", "--json") == 0
    assert json.loads(capsys.readouterr().out)["prompt_tokens"] == 248


def test_help_explains_every_flag():
    result = subprocess.run([sys.executable, str(REPO / "infer.py"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for flag in ("--checkpoint", "--tokenizer", "--prompt-file", "--mode", "--lang", "--src-lang", "--tgt-lang",
                 "--max-new-tokens", "--greedy", "--temperature", "--top-p", "--top-k", "--n", "--seed", "--stop",
                 "--stream", "--json", "--truncate-left", "code translation"):
        assert flag in result.stdout


def test_mindir_folder_gives_the_checkpoints_output(infer, tiny_checkpoint, tmp_path, capsys):
    from codegeex_ms.quantize_export import main as quantize_export
    assert quantize_export(["export", str(tiny_checkpoint), str(tmp_path / "mindir"), "--batch-size", "2"]) == 0
    capsys.readouterr()
    args = ["--prompt", "def add(a, b):", "--lang", "python", "--max-new-tokens", "10", "--json"]
    outputs = []
    for source in (["--checkpoint", str(tiny_checkpoint)], ["--mindir", str(tmp_path / "mindir")]):
        assert run(infer, *source, *args, "--greedy") == 0
        outputs.append(json.loads(capsys.readouterr().out)["completions"])
    assert outputs[0] == outputs[1] and len(outputs[1]) == 1
    from codegeex_ms.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match=r"3 rows do not fit the batch size 2 .*re-export with --batch-size 3"):
        run(infer, "--mindir", str(tmp_path / "mindir"), *args, "--n", "3")


def test_a_1000_token_prompt_fits_weights_cache_and_a_small_working_set(tmp_path, shared_dir):
    """infer.py in a child process on a 350M int8 checkpoint (``quantize``'s default form: int8 Linears, float32
    rest) with a 1,000-token prompt: about MindSpore (0.49 GiB) + the weights (0.54) + the KV cache (0.20) + a small
    working set, 1.42 GiB (measured; the engine issue's target is 1.5 GB), the same with both cores loaded by other
    jobs. The child reports its own peak (``peak_memory.run_script``): ``wait4``'s figure starts from this pytest
    process's size, which is what made it read 1.57 and 1.76 GiB inside the full suite. The bound, 1.6 GiB, is far
    below what it guards against: one 1,024-token prefill graph holding every layer's attention scores (8.42 GiB,
    measured) or the graph path without the kernels (6.2 GiB)."""
    from codegeex_ms.checkpoint import write_random
    from codegeex_ms.config import resolve_config
    from codegeex_ms.peak_memory import run_script
    from codegeex_ms.tokenizer import load
    cfg = resolve_config("codegeex_350m").replace(precision={"param_dtype": "float32", "compute_dtype": "float32",
                                                             "weight_quant": "int8"})
    tokenizer_dir = shared_dir / "tokenizer" / "codegeex"
    folder = write_random(tmp_path / "350m-int8", cfg, tokenizer=str(tokenizer_dir))
    tokenizer = load(tokenizer_dir)
    prompt = tokenizer.decode(tokenizer.encode((REPO / "src/codegeex_ms/generation.py").read_text())[:1000])
    (tmp_path / "prompt.txt").write_text(prompt)
    args = ["--checkpoint", folder, "--prompt-file", tmp_path / "prompt.txt", "--greedy", "--max-new-tokens", "8",
            "--json"]
    with open(tmp_path / "out.json", "w") as out, open(tmp_path / "err.txt", "w") as err:
        status, peak = run_script(REPO / "infer.py", args, stdout=out, stderr=err)
    assert status == 0, (tmp_path / "err.txt").read_text()[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert 990 <= out["prompt_tokens"] <= 1010
    assert peak <= 1.6 * 2**30, f"peak RSS {peak / 2**30:.2f} GiB"
