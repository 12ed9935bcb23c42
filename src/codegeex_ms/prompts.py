"""Prompt templates for the three tasks (completion, translation, explanation) and the policy around them.

``build`` is the one place that turns a task into (prompt text, language of the answer, extra stop strings): the
CLI (``infer.py``), the server's endpoints and the playground page all go through it, so the same request gets
the same prompt everywhere.

Completion and translation follow the original exactly:
completion prefixes the language-tag line; translation is
``code translation\\n<Src>:\\n<source code>\\n<Tgt>:\\n<optional target declaration>`` with the original's
language spellings (``C++``, ``JavaScript``, otherwise the capitalised name). Explanation follows the VS Code
extension's few-shot "Explain the code line by line" template (section 7.2): an example function, then the
same function with a comment above every line, then the user's code, the instruction again and an open
comment, so the model continues with a commented copy of the user's code.
"""
from __future__ import annotations

from dataclasses import dataclass

from .languages import LANGUAGE_TAGS, add_language_tag, canonical_language

TASKS = ("complete", "translate", "explain")

# The comment marker each language's tag line starts with (before " language:"), used by the explain template.
def comment_marker(language: str) -> str:
    tag = LANGUAGE_TAGS[canonical_language(language)]
    return tag.split("language:")[0].strip() or "#"


def translation_name(language: str) -> str:
    """How the original's translation template spells a language (``C++``, ``JavaScript``, ``Python`` ...)."""
    name = canonical_language(language)
    return name if name in ("C++", "JavaScript") else name.lower().capitalize()


def complete(code: str, language: str | None) -> str:
    return add_language_tag(code, language) if language else code


def translate(code: str, src_language: str, tgt_language: str, tgt_declaration: str = "") -> str:
    return (f"code translation\n{translation_name(src_language)}:\n{code.rstrip()}\n"
            f"{translation_name(tgt_language)}:\n{tgt_declaration}")


_EXAMPLE = {
    "code": ["def sum_squares(lst):", "    total = 0", "    for x in lst:", "        total += x * x",
             "    return total"],
    "notes": ["Define a function that takes a list of numbers.", "Start the running total at zero.",
              "Visit every number in the list.", "Add the square of the number to the total.",
              "Return the sum of the squares."],
}


def explain(code: str, language: str) -> str:
    """A few-shot prompt asking for a line-by-line explanation of ``code`` as comments."""
    marker = comment_marker(language)
    example = "\n".join(_EXAMPLE["code"])
    commented = "\n".join(f"{line[:len(line) - len(line.lstrip())]}{marker} {note}\n{line}"
                          for line, note in zip(_EXAMPLE["code"], _EXAMPLE["notes"]))
    first_line = code.strip("\n").split("\n")[0]
    indent = first_line[:len(first_line) - len(first_line.lstrip())]
    return (f"{LANGUAGE_TAGS['Python']}\n{example}\n\n{marker} Explain the code line by line\n{commented}\n\n"
            f"{LANGUAGE_TAGS[canonical_language(language)]}\n{code.rstrip()}\n\n"
            f"{marker} Explain the code line by line\n{indent}{marker} ")



@dataclass(frozen=True)
class Prompt:
    text: str
    language: str | None        # canonical language of the answer: its stop rule and cleanup (None: no rule)
    stop: tuple[str, ...] = ()  # stop strings the task itself needs
    lead: str = ""              # what the prompt already wrote of the answer (explain: the open comment)


def build(task: str, code: str, language: str | None = None, src_language: str | None = None,
          tgt_language: str | None = None, tgt_declaration: str = "", end_line: bool = False) -> Prompt:
    """The prompt for ``task`` on ``code``; raises ValueError naming a missing language, or UnknownLanguageError.

    complete: ``end_line`` ends the code with a newline when a language is given. A prompt typed as a whole line
    (``infer.py --prompt "def f(x):"``) wants it: the stop rules read the completion line by line from a line
    start, and "def f(x):" would otherwise be judged on its own continuation. An editor's prefix ends at the
    cursor, mid-line, and must not get one (the server and the IDE endpoints leave it off).
    translate: the answer is in ``tgt_language`` and follows its stop rule.
    explain: the answer is a commented copy of the code, which ends at the first blank line ("\n\n"); the
    prompt ends with its open first comment, which is the answer's ``lead``.
    """
    if task == "complete":
        if language is None:
            return Prompt(code, None)
        language = canonical_language(language)
        if end_line and not code.endswith("\n"):
            code += "\n"
        return Prompt(complete(code, language), language)
    if task == "translate":
        if not src_language or not tgt_language:
            raise ValueError("translation needs a source and a target language")
        return Prompt(translate(code, src_language, tgt_language, tgt_declaration), canonical_language(tgt_language))
    if task == "explain":
        if not language:
            raise ValueError("explanation needs the language of the code")
        text = explain(code, language)
        return Prompt(text, None, ("\n\n",), text[text.rfind("\n") + 1:])
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
