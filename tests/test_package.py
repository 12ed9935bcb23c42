"""Package hygiene: importing it writes nothing and prints nothing."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest


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


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


ENTRY_POINTS = ["infer.py", "serve.py", "train.py", "eval_humaneval_x.py", "data_prep/prepare_corpus.py",
                "data_prep/train_tokenizer.py", "codegeex_ms.convert", "codegeex_ms.quantize_export",
                "codegeex_ms.reshard", "codegeex_ms.dryrun"]


def _parser_of(entry, monkeypatch):
    """The ArgumentParser an entry point builds (captured when it parses)."""
    import importlib
    import importlib.util
    from pathlib import Path
    from codegeex_ms import cli

    def capture(self, *args, **kwargs):
        raise _Captured(self)
    monkeypatch.setattr(cli.ArgumentParser, "parse_args", capture)
    if entry.endswith(".py"):
        path = Path(__file__).resolve().parents[1] / entry
        monkeypatch.syspath_prepend(str(path.parent))
        spec = importlib.util.spec_from_file_location(f"entry_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(entry)
    build = getattr(module, "parse_args", None) or module.main
    try:
        build([])
    except _Captured as c:
        return c.parser
    raise AssertionError(f"{entry} did not build its parser through codegeex_ms.cli.ArgumentParser")


def _parsers(parser, name):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_flag_is_explained(entry, monkeypatch):
    """Each argument and option of every entry point (and of each subcommand) carries a help text of its own."""
    parser = _parser_of(entry, monkeypatch)
    for name, p in _parsers(parser, entry):
        assert p.description, f"{name} has no description"
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction,
                                   argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
                continue
            label = "/".join(action.option_strings) or action.dest
            assert action.help and len(action.help.split()) >= 3, f"{name}: {label} is not explained"
