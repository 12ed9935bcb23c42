"""Language names, CodeGeeX language-tag lines and file extensions.

Pre-training prefixed every file with ``LANGUAGE_TAG[lang] + "\\n"`` and HumanEval-X prompts start with the
same line (as the original CodeGeeX). The tag strings below are the original ones verbatim,
including their irregular spellings (``// language: swift``, ``<!--language: HTML-->``, ``!language: Fortran``).
"""
from __future__ import annotations

import os

# Canonical name -> tag line (the table of codegeex/data/data_utils.py).
LANGUAGE_TAGS: dict[str, str] = {
    "C": "// language: C",
    "C++": "// language: C++",
    "C#": "// language: C#",
    "CSS": "/* language: CSS */",
    "Cuda": "// language: Cuda",
    "Dart": "// language: Dart",
    "Lua": "// language: Lua",
    "Objective-C": "// language: Objective-C",
    "Objective-C++": "// language: Objective-C++",
    "Python": "# language: Python",
    "Perl": "# language: Perl",
    "Prolog": "% language: Prolog",
    "Swift": "// language: swift",
    "Lisp": "; language: Lisp",
    "Java": "// language: Java",
    "Scala": "// language: Scala",
    "TeX": "% language: TeX",
    "Vue": "<!--language: Vue-->",
    "Markdown": "<!--language: Markdown-->",
    "HTML": "<!--language: HTML-->",
    "PHP": "// language: PHP",
    "JavaScript": "// language: JavaScript",
    "TypeScript": "// language: TypeScript",
    "Go": "// language: Go",
    "Shell": "# language: Shell",
    "Rust": "// language: Rust",
    "SQL": "-- language: SQL",
    "Kotlin": "// language: Kotlin",
    "Visual Basic": "' language: Visual Basic",
    "Ruby": "# language: Ruby",
    "Pascal": "// language: Pascal",
    "R": "# language: R",
    "Fortran": "!language: Fortran",
    "Lean": "-- language: Lean",
    "Matlab": "% language: Matlab",
    "Delphi": "{language: Delphi}",
    "Scheme": "; language: Scheme",
    "Basic": "' language: Basic",
    "Assembly": "; language: Assembly",
    "Groovy": "// language: Groovy",
    "Abap": "* language: Abap",
    "GDScript": "# language: GDScript",
    "Haskell": "-- language: Haskell",
    "Julia": "# language: Julia",
    "Elixir": "# language: Elixir",
    "Excel": "' language: Excel",
    "Clojure": "; language: Clojure",
    "ActionScript": "// language: ActionScript",
    "Solidity": "// language: Solidity",
    "PowerShell": "# language: PowerShell",
    "Erlang": "% language: Erlang",
    "Cobol": "// language: Cobol",
}

# Extra names people type (compared case-insensitively; canonical names match too).
_ALIASES = {
    "cpp": "C++", "cxx": "C++", "cc": "C++", "c plus plus": "C++",
    "csharp": "C#", "cs": "C#", "cu": "Cuda",
    "objectivec": "Objective-C", "objc": "Objective-C", "obj-c": "Objective-C",
    "objective-cpp": "Objective-C++", "objcpp": "Objective-C++",
    "py": "Python", "python3": "Python", "py3": "Python",
    "pl": "Perl", "js": "JavaScript", "node": "JavaScript", "nodejs": "JavaScript", "ecmascript": "JavaScript",
    "ts": "TypeScript", "golang": "Go", "rs": "Rust", "kt": "Kotlin", "rb": "Ruby",
    "sh": "Shell", "bash": "Shell", "zsh": "Shell", "vb": "Visual Basic", "vba": "Visual Basic",
    "vb.net": "Visual Basic", "latex": "TeX", "md": "Markdown", "htm": "HTML", "f90": "Fortran",
    "asm": "Assembly", "clj": "Clojure", "ps1": "PowerShell", "pwsh": "PowerShell", "erl": "Erlang",
    "ex": "Elixir", "hs": "Haskell", "jl": "Julia", "sol": "Solidity", "scm": "Scheme", "el": "Lisp",
    "emacs lisp": "Lisp", "common lisp": "Lisp", "as": "ActionScript", "postgresql": "SQL", "mysql": "SQL",
    # VS Code's language identifiers where they differ from the names above
    "shellscript": "Shell", "javascriptreact": "JavaScript", "typescriptreact": "TypeScript", "cuda-cpp": "Cuda",
}

# File extension (lower case, with the dot) -> canonical name.
EXTENSIONS: dict[str, str] = {
    ".c": "C", ".h": "C",
    ".cpp": "C++", ".cc": "C++", ".cxx": "C++", ".c++": "C++", ".hpp": "C++", ".hh": "C++", ".hxx": "C++",
    ".h++": "C++", ".ipp": "C++", ".tpp": "C++",
    ".cs": "C#", ".css": "CSS", ".cu": "Cuda", ".cuh": "Cuda", ".dart": "Dart", ".lua": "Lua",
    ".m": "Objective-C", ".mm": "Objective-C++",
    ".py": "Python", ".pyw": "Python", ".pyi": "Python",
    ".pl": "Perl", ".pm": "Perl", ".pro": "Prolog", ".swift": "Swift",
    ".lisp": "Lisp", ".lsp": "Lisp", ".el": "Lisp",
    ".java": "Java", ".scala": "Scala", ".sc": "Scala", ".tex": "TeX", ".sty": "TeX", ".vue": "Vue",
    ".md": "Markdown", ".markdown": "Markdown", ".html": "HTML", ".htm": "HTML",
    ".php": "PHP", ".js": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript", ".jsx": "JavaScript",
    ".ts": "TypeScript", ".tsx": "TypeScript", ".go": "Go", ".sh": "Shell", ".bash": "Shell", ".zsh": "Shell",
    ".rs": "Rust", ".sql": "SQL", ".kt": "Kotlin", ".kts": "Kotlin", ".vb": "Visual Basic", ".bas": "Basic",
    ".rb": "Ruby", ".pas": "Pascal", ".pp": "Pascal", ".r": "R",
    ".f": "Fortran", ".f77": "Fortran", ".f90": "Fortran", ".f95": "Fortran", ".f03": "Fortran",
    ".lean": "Lean", ".dpr": "Delphi", ".scm": "Scheme", ".ss": "Scheme", ".asm": "Assembly", ".s": "Assembly",
    ".groovy": "Groovy", ".gradle": "Groovy", ".abap": "Abap", ".gd": "GDScript", ".hs": "Haskell",
    ".jl": "Julia", ".ex": "Elixir", ".exs": "Elixir", ".clj": "Clojure", ".cljs": "Clojure", ".as": "ActionScript",
    ".sol": "Solidity", ".ps1": "PowerShell", ".psm1": "PowerShell", ".erl": "Erlang", ".hrl": "Erlang",
    ".cob": "Cobol", ".cbl": "Cobol",
}

# Interpreter named on a "#!" line -> canonical name (for scripts without an extension).
SHEBANGS = {"python": "Python", "python2": "Python", "python3": "Python", "sh": "Shell", "bash": "Shell",
            "zsh": "Shell", "dash": "Shell", "ksh": "Shell", "perl": "Perl", "ruby": "Ruby", "node": "JavaScript",
            "php": "PHP", "lua": "Lua", "Rscript": "R", "julia": "Julia", "elixir": "Elixir", "pwsh": "PowerShell"}

_BY_LOWER = {name.lower(): name for name in LANGUAGE_TAGS} | _ALIASES


class UnknownLanguageError(ValueError):
    """A language name or file extension that CodeGeeX has no tag for."""


def canonical_language(name: str) -> str:
    """``"cpp"``, ``"C++"``, ``"c++"`` -> ``"C++"``; ``"js"`` -> ``"JavaScript"``; case-insensitive."""
    key = name.strip().lower()
    if key in _BY_LOWER:
        return _BY_LOWER[key]
    raise UnknownLanguageError(f"unknown language {name!r}; known: {', '.join(LANGUAGE_TAGS)} "
                               f"(aliases such as cpp, js, py, ts, golang, rs are accepted)")


def language_tag(name: str) -> str:
    """The tag line (without newline) of a language given by any accepted name."""
    return LANGUAGE_TAGS[canonical_language(name)]


def add_language_tag(code: str, language: str) -> str:
    """Prefix ``code`` with its language's tag line, as pre-training and HumanEval-X did."""
    return language_tag(language) + "\n" + code


def language_from_path(path: str | os.PathLike, first_line: str | None = None) -> str | None:
    """The language of a file from its extension, else from a ``#!`` line; None if neither tells."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if first_line and first_line.startswith("#!"):
        words = first_line[2:].strip().split()
        if words:
            program = os.path.basename(words[0])
            if program == "env" and len(words) > 1:
                program = words[1] if not words[1].startswith("-") else (words[2] if len(words) > 2 else "")
            program = program.rstrip("0123456789.") if program.rstrip("0123456789.") in SHEBANGS else program
            return SHEBANGS.get(program)
    return None
