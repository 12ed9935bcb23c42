"""The reference PyTorch CodeGeeX (``pip install --no-deps codegeex==1.0``), imported file by file.

The package ``__init__`` needs transformers, so only ``codegeex/torch/codegeex_model.py`` and
``codegeex/torch/inference.py`` are loaded. The reference hard-codes fp16 casts meant for GPUs; the
``fp32()`` context manager neutralises ``Tensor.half`` so it runs in fp32 on the CPU.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util

import pytest

torch = pytest.importorskip("torch")


def _load(relative: str, module_name: str):
    try:
        dist = importlib.metadata.distribution("codegeex")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("reference package missing: pip install --no-deps codegeex==1.0")
    path = dist.locate_file(relative)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_model_module():
    return _load("codegeex/torch/codegeex_model.py", "codegeex_reference_model")


def reference_inference_module():
    return _load("codegeex/torch/inference.py", "codegeex_reference_inference")


@contextlib.contextmanager
def fp32():
    original = torch.Tensor.half
    torch.Tensor.half = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.half = original


def random_reference_model(model_cfg, seed: int = 0):
    """A reference CodeGeeXModel with every parameter (LayerNorms included) drawn at random, in fp32."""
    module = reference_model_module()
    torch.manual_seed(seed)
    with fp32():
        model = module.CodeGeeXModel(model_cfg.hidden_size, model_cfg.num_layers, model_cfg.num_heads,
                                     model_cfg.padded_vocab_size, model_cfg.max_position_embeddings)
    model = model.float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def reference_logits(model, tokens, position_ids=None, attention_mask=None):
    """Logits of the reference model; ``attention_mask`` follows our convention (1 = may attend)."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    b, s = tokens.shape
    if position_ids is None:
        position_ids = torch.arange(s).unsqueeze(0).expand(b, s)
    if attention_mask is None:
        attention_mask = torch.tril(torch.ones(b, s, s))
    blocked = (torch.as_tensor(attention_mask, dtype=torch.float32) < 0.5).unsqueeze(1)   # [b, 1, s, s]
    with fp32(), torch.no_grad():
        return model(tokens, torch.as_tensor(position_ids, dtype=torch.long), blocked).float().numpy()


def reference_tokenizer(directory):
    """The original ``CodeGeeXTokenizer`` over ``AutoTokenizer.from_pretrained(directory)`` (needs transformers)."""
    import os
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    module = _load("codegeex/tokenizer/tokenizer.py", "codegeex_reference_tokenizer")
    hf = transformers.AutoTokenizer.from_pretrained(str(directory))
    return module.CodeGeeXTokenizer(tokenizer=hf)
