"""The original CodeGeeX code, loaded file by file for the benchmarks' side-by-side runs.

``pip install --no-deps codegeex==1.0``: its package ``__init__`` needs transformers and more, so only the
files a benchmark needs are imported.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util


def load_original(relative_path: str, module_name: str):
    """Import ``codegeex/<relative_path>`` from the installed codegeex package without its ``__init__``."""
    path = importlib.metadata.distribution("codegeex").locate_file(f"codegeex/{relative_path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_model(m):
    """The reference ``CodeGeeXModel`` for a ModelConfig, in fp32 on the CPU.

    The reference hard-codes ``.half()`` casts meant for GPUs; they are neutralised for the rest of the
    (benchmark) process so it runs in fp32.
    """
    import torch
    torch.Tensor.half = lambda self, *args, **kwargs: self
    module = load_original("torch/codegeex_model.py", "codegeex_reference_model")
    return module.CodeGeeXModel(m.hidden_size, m.num_layers, m.num_heads, m.padded_vocab_size,
                                m.max_position_embeddings).float()
