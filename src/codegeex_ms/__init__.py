"""codegeex-ms: CodeGeeX in MindSpore.

Importing the package is cheap and side-effect free: MindSpore itself is imported only when a model is
built or loaded (``codegeex_ms.load``).
"""
from .config import Config, ConfigError, ModelConfig, ParallelConfig, PrecisionConfig, load_config

__version__ = "0.1.0"


def load(path, **kwargs):
    """Load a self-describing checkpoint folder and return the model ready for inference (see checkpoint.load)."""
    from .checkpoint import load as _load
    return _load(path, **kwargs)


__all__ = ["Config", "ConfigError", "ModelConfig", "ParallelConfig", "PrecisionConfig", "load_config", "load"]
