"""When a completion is finished, and how it is cleaned up: the original's per-language rules.

Ported from ``codegeex/benchmark/utils.py`` (``is_code_generation_finished`` / ``cleanup_code``), used by
both ``infer.py`` and the HumanEval-X evaluation so the two cannot drift apart. Languages are given by any
name ``languages.canonical_language`` accepts; languages without a rule never stop early and are not cleaned.
Rust has no rule in the original; it gets the C-like brace rule here (its HumanEval-X prompts open the
function body the same way).
"""
from __future__ import annotations

from .languages import UnknownLanguageError, canonical_language

_PYTHON_END_WORDS = ("\ndef", "\nclass", "\nif", "\n#", "\nprint")
_BRACE_LANGUAGES = ("C++", "Java", "JavaScript", "Go", "Rust")


def _canonical(language: str | None) -> str | None:
    if language is None:
        return None
    try:
        return canonical_language(language)
    except UnknownLanguageError:
        return None


def has_stop_rule(language: str | None) -> bool:
    return _canonical(language) in ("Python",) + _BRACE_LANGUAGES


def is_finished(code: str, language: str | None) -> bool:
    """True once a completion of a function body has ended.

    Python: a non-empty line that is not indented, or one of ``\\ndef \\nclass \\nif \\n# \\nprint``.
    C++/Java/JavaScript/Go/Rust: one more ``}`` than ``{`` (the prompt opened the body).
    """
    lang = _canonical(language)
    if lang == "Python":
        for line in code.split("\n"):
            if line.strip() and line[0] not in (" ", "\t"):
                return True
        return any(w in code for w in _PYTHON_END_WORDS)
    if lang in _BRACE_LANGUAGES:
        return code.count("{") + 1 == code.count("}")
    return False


def cleanup(code: str, language: str | None) -> str:
    """Cut a finished completion back to the function body, exactly as the original did."""
    lang = _canonical(language)
    if lang == "Python":
        for w in _PYTHON_END_WORDS + ("\nassert",):
            if w in code:
                code = code[:code.rfind(w)]
    elif lang == "Java":
        main = code.find("public static void main")
        if main != -1:
            code = code[:main] + "}"
        if "}" in code:
            code = code[:code.rfind("}")] + "}"
        if code.count("{") + 1 == code.count("}"):
            code += "\n}"
    elif lang == "Go":
        for w in ("\n//", "\nfunc main("):
            if w in code:
                code = code[:code.rfind(w)]
        if "}" in code:
            code = code[:code.rfind("}")] + "}"
    elif lang in ("C++", "JavaScript", "Rust"):
        if "}" in code:
            code = code[:code.rfind("}")] + "}"
    return code
