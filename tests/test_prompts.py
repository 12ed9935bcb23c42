"""prompts.build: the one prompt policy of infer.py, the server's endpoints and the playground."""
from __future__ import annotations

import pytest

from codegeex_ms import prompts
from codegeex_ms.languages import UnknownLanguageError


def test_complete_adds_the_tag_and_a_newline_only_for_a_typed_line():
    assert prompts.build("complete", "def f(x):", "py", end_line=True) == \
        prompts.Prompt("# language: Python\ndef f(x):\n", "Python")
    assert prompts.build("complete", "def f(x):", "py").text == "# language: Python\ndef f(x):"
    assert prompts.build("complete", "x\n", "cpp", end_line=True).text == "// language: C++\nx\n"
    assert prompts.build("complete", "def f(x):", None, end_line=True) == prompts.Prompt("def f(x):", None)


def test_translate_and_explain():
    built = prompts.build("translate", "x = 1\n", src_language="python", tgt_language="js")
    assert built == prompts.Prompt("code translation\nPython:\nx = 1\nJavaScript:\n", "JavaScript")
    explain = prompts.build("explain", "int x;", "cpp")
    assert explain.text.endswith("// Explain the code line by line\n// ") and explain.stop == ("\n\n",)
    assert explain.lead == "// "
    assert explain.language is None


@pytest.mark.parametrize("args, error, needle", [
    (("translate", "x"), ValueError, "source and a target"),
    (("explain", "x"), ValueError, "language of the code"),
    (("summarise", "x"), ValueError, "unknown task 'summarise'"),
    (("complete", "x", "klingon"), UnknownLanguageError, "klingon"),
])
def test_bad_tasks_are_named(args, error, needle):
    with pytest.raises(error, match=needle):
        prompts.build(*args)
