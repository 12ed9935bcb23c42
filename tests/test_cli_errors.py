"""Every entry script on a table of bad inputs: a non-zero exit, a first stderr line that starts with ``error:`` and
names the problem (file, flag, field), no traceback, and nothing written into the working directory."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "checkpoints" / "codegeex-mini"


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Folders with one thing wrong each."""
    root = tmp_path_factory.mktemp("broken")
    run = root / "run"
    (run / "checkpoints" / "step-00000020").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    truncated = root / "truncated"
    shutil.copytree(MINI, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad_config = root / "bad_config"
    shutil.copytree(MINI, bad_config)
    (bad_config / "config.yaml").write_text((bad_config / "config.yaml").read_text() + "extra_section:\n  x: 1\n")
    import mindspore as ms
    from codegeex_ms import checkpoint
    from codegeex_ms.config import resolve_config
    from codegeex_ms.model import CodeGeeX
    ms.set_context(mode=ms.GRAPH_MODE)
    fp32 = checkpoint.save(CodeGeeX(resolve_config("codegeex_tiny")), root / "truncated_fp32")
    weights = fp32 / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (root / "garbage.pt").write_bytes(b"this is not a pickle")
    (root / "empty.jsonl").write_text("")
    small_vocab = root / "small_vocab_data"
    small_vocab.mkdir()
    (small_vocab / "train-00000.mindrecord").write_bytes(b"")
    (small_vocab / "manifest.json").write_text('{"tokenizer": {"path": "/t", "vocab_size": 60000, "eos_id": 50256}}')
    return root


CASES = [
    # (id, argv, text the first stderr line must contain)
    ("infer-n-0", ["infer.py", "--n", "0", "--prompt", "x"], "argument --n: must be >= 1, got 0"),
    ("infer-n-negative", ["infer.py", "--n", "-1", "--prompt", "x"], "argument --n: must be >= 1, got -1"),
    ("infer-top-k", ["infer.py", "--top-k", "-3", "--prompt", "x"], "argument --top-k: must be >= 0"),
    ("infer-candidates", ["infer.py", "--candidates", "many", "--prompt", "x"], "'many' is not an integer"),
    ("infer-prompt-file", ["infer.py", "--prompt-file", "{root}/nope.py"], "No such file or directory: {root}/nope.py"),
    ("infer-missing-folder", ["infer.py", "--checkpoint", "{root}/nope", "--prompt", "x"],
     "checkpoint folder {root}/nope does not exist"),
    ("infer-run-folder", ["infer.py", "--checkpoint", "{root}/run", "--prompt", "x"],
     "is a training run folder, not a checkpoint folder; its latest checkpoint is "
     "{root}/run/checkpoints/step-00000020"),
    ("infer-truncated-weights", ["infer.py", "--checkpoint", "{root}/truncated", "--prompt", "x"],
     "{root}/truncated/model.safetensors is not a readable safetensors file"),
    ("infer-bad-config", ["infer.py", "--checkpoint", "{root}/bad_config", "--prompt", "x"],
     "unknown section(s) extra_section"),
    ("infer-mindir-missing", ["infer.py", "--mindir", "{root}/nope", "--prompt", "x"], "{root}/nope does not exist"),
    ("serve-port", ["serve.py", "--port", "70000"], "argument --port: must be a port (1..65535), got 70000"),
    ("serve-batch", ["serve.py", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    ("serve-missing-folder", ["serve.py", "--checkpoint", "{root}/nope"],
     "checkpoint folder {root}/nope does not exist"),
    ("serve-truncated-weights", ["serve.py", "--checkpoint", "{root}/truncated"], "is not a readable safetensors file"),
    ("eval-n", ["eval_humaneval_x.py", "generate", "--checkpoint", str(MINI), "--n", "0", "--out", "{root}/s.jsonl"],
     "argument --n: must be >= 1, got 0"),
    ("eval-run-folder", ["eval_humaneval_x.py", "generate", "--checkpoint", "{root}/run", "--out", "{root}/s.jsonl"],
     "its latest checkpoint is {root}/run/checkpoints/step-00000020"),
    ("eval-empty-samples", ["eval_humaneval_x.py", "evaluate", "--samples", "{root}/empty.jsonl", "--out",
                            "{root}/r.jsonl"], "--samples {root}/empty.jsonl holds no samples"),
    ("eval-timeout", ["eval_humaneval_x.py", "evaluate", "--canonical", "--run-timeout", "0", "--out",
                      "{root}/r.jsonl"],
     "argument --run-timeout: must be > 0"),
    ("convert-garbage", ["-m", "codegeex_ms.convert", "{root}/garbage.pt", "{root}/converted"],
     "{root}/garbage.pt is not a PyTorch checkpoint"),
    ("quantize-truncated", ["-m", "codegeex_ms.quantize_export", "quantize", "{root}/truncated_fp32", "{root}/q"],
     "{root}/truncated_fp32/model.safetensors is not a readable safetensors file"),
    ("convert-truncated", ["-m", "codegeex_ms.convert", "{root}/truncated_fp32", "{root}/t.pt", "--to", "torch"],
     "{root}/truncated_fp32/model.safetensors is not a readable safetensors file"),
    ("quantize-run-folder", ["-m", "codegeex_ms.quantize_export", "quantize", "{root}/run", "{root}/q"],
     "is a training run folder"),
    ("export-batch", ["-m", "codegeex_ms.quantize_export", "export", str(MINI), "{root}/e", "--batch-size", "0"],
     "argument --batch-size: must be >= 1, got 0"),
    ("reshard-heads", ["-m", "codegeex_ms.reshard", "split", str(MINI), "{root}/split", "--model-parallel", "3"],
     "error: model.num_heads (8) is not divisible by parallel.model_parallel (3)"),
    ("dryrun-rank", ["-m", "codegeex_ms.dryrun", "--config", "codegeex_tiny", "--world", "2", "--rank", "5",
                     "--set", "parallel.model_parallel=2"], "--rank 5 is not a rank of a 2-device job"),
    ("train-lr", ["train.py", "--config", "codegeex_tiny", "--data", "{root}", "--out", "{root}/t", "--set",
                  "train.lr=-1.0"], "train.lr must be > 0, got -1.0"),
    ("train-vocab", ["train.py", "--config", "codegeex_tiny", "--data", "{root}/small_vocab_data", "--out",
                     "{root}/t"], "(60000 tokens), more than the model's model.padded_vocab_size (52224)"),
    ("train-scale-factor", ["train.py", "--config", "codegeex_tiny", "--data", "{root}", "--out", "{root}/t", "--set",
                            "train.loss_scale_factor=1.5"], "train.loss_scale_factor must be an integer, got 1.5"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_named_error(argv, expected, broken, tmp_path):
    argv = [a.replace("{root}", str(broken)) for a in argv]
    expected = expected.replace("{root}", str(broken))
    script = [str(REPO / argv[0])] if argv[0].endswith(".py") else argv[:2]
    rest = argv[1:] if argv[0].endswith(".py") else argv[2:]
    before = sorted(p.name for p in broken.iterdir())
    result = subprocess.run([sys.executable, *script, *rest], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("[WARNING]")]
    assert result.returncode != 0, result.stdout[-500:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines and lines[0].startswith("error:") and expected in lines[0], result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [], "files written into the working directory"
    assert sorted(p.name for p in broken.iterdir()) == before, "files written next to the inputs"
