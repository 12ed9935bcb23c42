"""Package hygiene: importing it writes nothing and prints nothing."""
from __future__ import annotations

import subprocess
import sys


def test_import_is_silent_and_writes_nothing(tmp_path):
    code = "import codegeex_ms, codegeex_ms.model, codegeex_ms.convert, codegeex_ms.checkpoint"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_convert_help_lists_every_flag():
    result = subprocess.run([sys.executable, "-m", "codegeex_ms.convert", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0
    for flag in ("--to", "--from", "--config", "--dtype", "--tokenizer", "--trust-pickle"):
        assert flag in result.stdout
