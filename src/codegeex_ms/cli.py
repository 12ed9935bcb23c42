"""What every entry script shares at its boundary: argparse types that reject bad numbers at parse time, and one
line ``error: ...`` with exit code 2 for the project's own errors instead of a traceback."""
from __future__ import annotations

import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad flag reported on one line that starts with ``error:`` (no usage block first)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class UsageError(ValueError):
    """A flag or an argument that cannot be used as given (the message names it)."""


def _number(kind, minimum, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


positive_int = _number(int, 1, True, ">= 1")
non_negative_int = _number(int, 0, True, ">= 0")
positive_float = _number(float, 0.0, False, "> 0")
non_negative_float = _number(float, 0.0, True, ">= 0")


def port(text: str) -> int:
    value = _number(int, 1, True, "a port (1..65535)")(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port (1..65535), got {text}")
    return value


def refuse_existing(path, overwrite: bool, flag: str = "--overwrite") -> None:
    """Refuse to write over an existing file or non-empty folder unless ``overwrite`` (the user passed ``flag``):
    a command never mixes its new output with an earlier one, and never deletes one it was not told to."""
    from pathlib import Path
    out = Path(path)
    if overwrite or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    raise UsageError(f"{out} already exists; pass {flag} to replace it, or choose a new output path")


def project_errors() -> tuple[type[BaseException], ...]:
    """The error types that describe bad input (a file, a flag, a config field), each with a readable message."""
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .safetensors_io import SafetensorsFileError
    errors: list[type[BaseException]] = [UsageError, ConfigError, CheckpointError, SafetensorsFileError,
                                         FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError]
    for module, name in (("convert", "ConversionError"), ("reshard", "ReshardError"),
                         ("humaneval.dataset", "DatasetError"), ("languages", "UnknownLanguageError"),
                         ("ascend_standins", "StandinError"), ("humaneval.paper", "PaperStepError"),
                         ("engines", "StageError"), ("dryrun", "DryRunError"), ("data.collect", "CorpusError"),
                         ("data.pipeline", "PrepareError"), ("tokenizer", "TokenizerError")):
        try:
            mod = __import__(f"codegeex_ms.{module}", fromlist=[name])
            errors.append(getattr(mod, name))
        except (ImportError, AttributeError):
            pass
        # a module run as ``python -m codegeex_ms.X`` is a second copy named __main__, whose error classes are
        # not the package module's: its own raise those
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name == f"codegeex_ms.{module}" and isinstance(getattr(main, name, None), type):
            errors.append(getattr(main, name))
    return tuple(errors)


def run(main, *args) -> int:
    """``main(*args)``, with the project's errors printed as ``error: ...`` (exit code 2)."""
    try:
        return main(*args)
    except project_errors() as e:
        message = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.strerror}: {e.filename}"
        print(f"error: {message}", file=sys.stderr)
        return 2
