"""Stop rules and cleanup: the original's per-language behaviour on crafted completions."""
from __future__ import annotations

import pytest

from codegeex_ms import prompts
from codegeex_ms.stopping import cleanup, has_stop_rule, is_finished


@pytest.mark.parametrize("language, code, finished", [
    ("python", "    return x\n", False),
    ("python", "    return x\n\ndef g():", True),
    ("python", "    return x\nprint(1)", True),                 # a new top-level statement
    ("python", "    x = 1\n    # comment\n", False),
    ("python", "    if a:\n        b\n\tc\n", False),
    ("python", "    return 1\nassert f(1)", True),
    ("cpp", "    return a;\n", False),
    ("cpp", "    if (a) { b; }\n    return a;\n}", True),
    ("java", "        return x;\n    }\n", True),
    ("js", "  return [1].map(x => { return x; });\n}\n", True),
    ("go", "\treturn a\n", False),
    ("go", "\treturn a\n}\n", True),
    ("rust", "    a + b\n}\n", True),
    ("kotlin", "}\n}\n", False),                                # no rule
    (None, "}}}", False),
])
def test_is_finished(language, code, finished):
    assert is_finished(code, language) is finished


@pytest.mark.parametrize("language, code, cleaned", [
    ("python", "    return x\n\ndef g():\n    pass\n", "    return x\n"),
    ("python", "    return x\nprint(f(1))\n", "    return x"),
    ("python", "    return x\n\nassert f(1) == 2\n", "    return x\n"),
    ("python", "    return x\nfoo = 1", "    return x\nfoo = 1"),    # not an end word: kept, as the original
    ("cpp", "    return a;\n}\nint main() {\n}\n", "    return a;\n}\nint main() {\n}"),
    ("cpp", "    return a;\n}\n\n// trailing", "    return a;\n}"),
    ("java", "        return x;\n    }\n    public static void main(String[] a) {\n    }\n}",
     "        return x;\n    }\n    }"),
    ("java", "        return x;\n    }\n", "        return x;\n    }\n}"),
    ("go", "\treturn a\n}\n\nfunc main() {\n}\n", "\treturn a\n}"),
    ("go", "\treturn a\n}\n// helper\n", "\treturn a\n}"),
    ("js", "  return 1;\n}\nconsole.log(f());", "  return 1;\n}"),
    ("rust", "    a\n}\nfn main() {}", "    a\n}\nfn main() {}"),
    ("kotlin", "x }", "x }"),
])
def test_cleanup(language, code, cleaned):
    assert cleanup(code, language) == cleaned


def test_rule_languages():
    assert all(has_stop_rule(lang) for lang in ("python", "C++", "java", "JavaScript", "golang", "rs"))
    assert not has_stop_rule("kotlin") and not has_stop_rule(None) and not has_stop_rule("klingon")


def test_translation_template_is_the_originals():
    prompt = prompts.translate("def add(a, b):\n    return a + b\n\n", "python", "cpp", "int add(int a, int b) {")
    assert prompt == ("code translation\nPython:\ndef add(a, b):\n    return a + b\nC++:\nint add(int a, int b) {")
    assert prompts.translate("x", "js", "go").endswith("JavaScript:\nx\nGo:\n")


def test_completion_and_explanation_templates():
    assert prompts.complete("int f() {", "cpp") == "// language: C++\nint f() {"
    assert prompts.complete("anything", None) == "anything"
    text = prompts.explain("int add(int a, int b) {\n    return a + b;\n}\n", "cpp")
    assert text.count("Explain the code line by line") == 2
    assert "// language: C++\nint add(int a, int b) {" in text
    assert text.endswith("// Explain the code line by line\n// ")
