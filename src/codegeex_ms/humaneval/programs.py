"""How a sample becomes the program that is run: the original harness's assembly, plus documented fixes.

``assemble`` follows ``humaneval-x/evaluate_humaneval_x.py::process_humaneval_test`` of THUDM/CodeGeeX. With
``upstream=True`` it is exactly that; by default (``upstream=False``) three dataset problems are repaired, so that
a correct completion is not failed by the harness:

- Go: packages are imported when the completion **or the test** uses them (upstream looks at the completion only,
  so correct completions of Go/2, 4, 44, 151 fail with ``undefined: math``/``strconv``), and ``test_setup``
  imports that nothing uses are dropped (Go/162's ``crypto/md5``, Go/32's ``math`` ... fail with "imported and
  not used" otherwise).
- Rust/50: the test's rand-0.4 call ``gen_range(a, b)`` is rewritten to ``gen_range(a..b)`` (rand 0.8, the
  version Debian packages).
- A Go or Rust test binary that ran no test is a failure, not a pass.

The remaining known problems cannot be repaired without changing what is measured; they are listed in
``KNOWN_ISSUES`` and reported next to the scores.
"""
from __future__ import annotations

import re

# benchmark/humaneval-x/evaluate_humaneval_x.py: IMPORT_HELPER
PYTHON_HEADER = ("import math", "import re", "import sys", "import copy", "import datetime", "import itertools",
                 "import collections", "import heapq", "import statistics", "import functools", "import hashlib",
                 "import numpy", "import numpy as np", "import string", "from typing import *",
                 "from collections import *")
CPP_HEADER = ("#include<stdlib.h>", "#include<algorithm>", "#include<math.h>", "#include<stdio.h>",
              "#include<vector>", "#include<string>", "#include<climits>", "#include<cstring>", "#include<iostream>")
GO_PACKAGES = ("math", "strings", "fmt", "strconv", "time", "bytes", "regexp", "sort", "math/rand", "crypto/md5")
RUST_MAIN = "\nfn main(){ \n } \n"

KNOWN_ISSUES = {
    "JavaScript/112": "canonical solution is wrong (`return (z, false)` is the comma operator); it fails its test",
    "JavaScript/155": "canonical solution returns [0, 0] for 0; the test expects [1, 0]",
    "Go/95": "canonical solution is flaky (depends on map iteration order; fails about 1 run in 4)",
    "CPP/23": "the test cannot fail: strlen(\"...\") binds to C's strlen from <cstring>",
    "Rust/32": "the test cannot fail: the whole test module is commented out",
    "Rust/10": "the test calls make_palindrome, defined only in the canonical solution",
    "Rust/38": "the test calls encode_cyclic, defined only in the canonical solution",
    "Rust/50": "the test calls decode_shift, defined only in the canonical solution (and uses rand 0.4's API)",
    "Rust/137": "the test uses enum RtnType, defined only in the canonical solution",
}
# tests that a wrong body still passes (in the fixed mode Rust/32 fails instead: "no tests ran")
CANNOT_FAIL = frozenset({"CPP/23", "Rust/32"})


def canonical_may_fail(upstream: bool) -> frozenset[str]:
    """Canonical solutions that do not (reliably) pass: JS/112 and JS/155 are wrong, Go/95 is flaky; in the fixed
    mode Rust/32 runs no test, which counts as a failure; upstream, Rust/50's rand-0.4 test does not compile."""
    base = {"JavaScript/112", "JavaScript/155", "Go/95"}
    return frozenset(base | ({"Rust/50"} if upstream else {"Rust/32"}))


def python_body(completion: str) -> str:
    """Upstream keeps the completion up to its first non-empty line that is not indented."""
    kept = []
    for line in completion.split("\n"):
        if line.strip() and line[0] not in (" ", "\t"):
            break
        kept.append(line)
    return "\n".join(kept)


def _go_imports(names: list[str]) -> str:
    return "import (\n" + "    ".join(f'"{p}"\n' for p in names) + ")"


def _uses(package: str, code: str) -> bool:
    """Upstream's test: the package's last path element followed by a dot, anywhere in the text."""
    return package.split("/")[-1] + "." in code


def _go_uses(package: str, code: str) -> bool:
    """A stricter test for the fixed mode: ``name.`` as an identifier, outside ``//`` comments (docstrings say
    "list of strings." and "operand.", which upstream's substring test takes for uses of strings and rand)."""
    code = re.sub(r"//[^\n]*", "", code)
    return re.search(r"(?<![\w.])" + re.escape(package.split("/")[-1]) + r"\.", code) is not None


def assemble(problem: dict, completion: str, lang: str, prefix: str | None = None, upstream: bool = False) -> str:
    """The program text for one sample. ``prefix`` is what the completion continues: the problem's ``prompt``
    for generation (default) and the target ``declaration`` for translation."""
    prompt = problem["prompt"] if prefix is None else prefix
    test = problem["test"]
    code = completion
    if lang == "python":
        return "\n".join(PYTHON_HEADER) + "\n" + prompt + python_body(code) + "\n" + test + "\n"
    if lang == "cpp":
        setup = "".join(line + "\n" for line in CPP_HEADER if line not in prompt)
        return setup + "\n" + prompt + code + "\n" + test
    if lang in ("java", "js"):
        return prompt + code + "\n" + test
    if lang == "go":
        prompt = prompt.replace(problem.get("import", ""), "")
        test_setup = problem["test_setup"]
        if upstream:
            others = [p for p in GO_PACKAGES if p not in test_setup and _uses(p, code)]
        else:
            used = code + test + prompt
            kept = [p for p in re.findall(r'"([^"]+)"', test_setup)
                    if p in ("testing", "github.com/stretchr/testify/assert") or _go_uses(p, used)]
            test_setup = "package main\n\n" + _go_imports(kept) + "\n"
            others = [p for p in GO_PACKAGES if p not in kept and _go_uses(p, used)]
        if others:
            return test_setup + "\n" + _go_imports(others) + "\n" + prompt + code + "\n" + test
        return test_setup + "\n" + prompt + code + "\n" + test
    if lang == "rust":
        if not upstream:
            test = re.sub(r"gen_range\(([^,()]+),\s*([^()]+)\)", r"gen_range(\1..\2)", test)
        # generation continues ``declaration + prompt``; translation continues the declaration alone
        head = problem["declaration"] + prompt if prefix is None else prefix
        return RUST_MAIN + head + code + test
    raise ValueError(f"unknown HumanEval-X language {lang!r}")


def negative_completion(lang: str) -> str:
    """A body that fails at run time in every language (the negative control of the self-test)."""
    return {
        "python": "    raise RuntimeError('negative control')\n",
        "cpp": "    throw 1;\n}\n",
        "java": "        throw new RuntimeException(\"negative control\");\n    }\n}",
        "js": "  throw new Error('negative control');\n}\n",
        "go": "    panic(\"negative control\")\n}\n",
        "rust": "    panic!(\"negative control\");\n}\n",
    }[lang]
