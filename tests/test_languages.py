"""Language tags, names and extensions."""
from __future__ import annotations

import pytest

from codegeex_ms.languages import (LANGUAGE_TAGS, UnknownLanguageError, add_language_tag, canonical_language,
                                   language_from_path, language_tag)


def test_original_tag_table():
    """Spot checks against codegeex/data/data_utils.py, irregular spellings included."""
    assert len(LANGUAGE_TAGS) == 52
    assert language_tag("python") == "# language: Python"
    assert language_tag("cpp") == language_tag("c++") == language_tag("C++") == "// language: C++"
    assert language_tag("js") == "// language: JavaScript"
    assert language_tag("swift") == "// language: swift"
    assert language_tag("html") == "<!--language: HTML-->"
    assert language_tag("css") == "/* language: CSS */"
    assert language_tag("fortran") == "!language: Fortran"
    assert language_tag("delphi") == "{language: Delphi}"
    assert language_tag("abap") == "* language: Abap"
    assert language_tag("vb") == "' language: Visual Basic"
    assert language_tag("matlab") == "% language: Matlab"


def test_aliases_are_case_insensitive():
    assert canonical_language("  JS ") == "JavaScript"
    assert canonical_language("Golang") == "Go"
    assert canonical_language("RUST") == "Rust"
    assert canonical_language("objective-c++") == "Objective-C++"


def test_unknown_language_lists_the_known_ones():
    with pytest.raises(UnknownLanguageError, match="unknown language 'klingon'; known: C, C\\+\\+, C#.*Python"):
        canonical_language("klingon")


def test_add_language_tag():
    assert add_language_tag("def f():\n", "py") == "# language: Python\ndef f():\n"


@pytest.mark.parametrize("path, first_line, language", [
    ("a/b/main.cpp", None, "C++"), ("x.HPP", None, "C++"), ("x.h", None, "C"), ("m.py", None, "Python"),
    ("t.tsx", None, "TypeScript"), ("lib.rs", None, "Rust"), ("README", None, None),
    ("build", "#!/usr/bin/env bash\n", "Shell"), ("tool", "#!/usr/bin/python3.11\n", "Python"),
    ("run", "#!/usr/bin/env -S node --flag\n", "JavaScript"), ("data.xyz", "hello", None),
])
def test_language_from_path(path, first_line, language):
    assert language_from_path(path, first_line) == language
