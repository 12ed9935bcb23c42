"""Shared fixtures: the tiny config, the shared reference data, a clean working directory."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CODEGEEX_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    """MindSpore writes rank_0/ and other debris into the working directory: keep it out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def ms_context():
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    return ms


@pytest.fixture(scope="session")
def tiny_config():
    from codegeex_ms.config import resolve_config
    return resolve_config("codegeex_tiny")


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED} (set CODEGEEX_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_config, shared_dir, tmp_path_factory, ms_context):
    """A tiny random CodeGeeX saved as a checkpoint folder that records the CodeGeeX tokenizer."""
    from codegeex_ms import checkpoint
    from codegeex_ms.model import CodeGeeX
    ms_context.set_seed(1)
    folder = tmp_path_factory.mktemp("tiny_ckpt") / "tiny"
    checkpoint.save(CodeGeeX(tiny_config), folder, tokenizer=str(shared_dir / "tokenizer" / "codegeex"))
    return folder
