"""HumanEval-X data: the six ``humaneval_<lang>.jsonl.gz`` files, their hashes, and the two prompt formats.

The files are the ones of THUDM/CodeGeeX at commit 2838420b (2024-07-10); ``fetch`` downloads them from there
and refuses any file whose sha256 differs from the one recorded here.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import urllib.request
from pathlib import Path

from ..fileio import atomic_write_bytes
from ..languages import language_tag
from ..prompts import translate

LANGUAGES = ("python", "cpp", "java", "js", "go", "rust")
TASK_PREFIX = {"python": "Python", "cpp": "CPP", "java": "Java", "js": "JavaScript", "go": "Go", "rust": "Rust"}
# canonical language names of languages.py, for the tag line and the stop rules
CANONICAL = {"python": "Python", "cpp": "C++", "java": "Java", "js": "JavaScript", "go": "Go", "rust": "Rust"}

UPSTREAM_COMMIT = "2838420b7b4492cf3d16bce5320e26e65960c9e2"
SHA256 = {
    "python": "5752fb122efddb0e9b47c77907ae6ce9a15aac4dea14e44c46032c831e6b987a",
    "cpp": "dcf2e280a1e91bbc3c5f90edb41397e8a9ac1ccc9f5d2b70082f0b0fbfb6dbb0",
    "java": "276f36db2eb7aeb864f36a19a2f4e1bb2460fb6e22ff100f0b5bedabe3799967",
    "js": "fe5d467f2c1a027b3f6f18d3729aca01f6458c1de2e2d1292a019c5aa9bed424",
    "go": "09126ef64ac68f87296c5f3781186aedc5dec799b114d9df99d6de4a715a7830",
    "rust": "ae5cabbbfc8fe25244a608b04f09ac3b324c645ac969dfc033756c12f0f9924c",
}
NUM_PROBLEMS = 164


class DatasetError(ValueError):
    pass


def data_file(data_dir: str | Path, lang: str) -> Path:
    return Path(data_dir) / f"humaneval_{lang}.jsonl.gz"


def language_of_task(task_id: str) -> str:
    """``CPP/12`` -> ``cpp``."""
    prefix = task_id.split("/")[0]
    for lang, name in TASK_PREFIX.items():
        if prefix.lower() == name.lower():
            return lang
    raise DatasetError(f"task_id {task_id!r} does not start with one of {', '.join(TASK_PREFIX.values())}")


def parse_languages(text: str | None) -> tuple[str, ...]:
    """``"python,cpp"`` -> ("python", "cpp"); None or "all" -> all six."""
    if not text or text == "all":
        return LANGUAGES
    langs = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if unknown:
        raise DatasetError(f"unknown language(s) {', '.join(unknown)}; choose from {', '.join(LANGUAGES)}")
    return langs


def load_problems(data_dir: str | Path, lang: str) -> dict[str, dict]:
    """task_id -> problem row of one language, in file order."""
    path = data_file(data_dir, lang)
    if not path.is_file():
        raise DatasetError(f"{path} not found; pass --data-dir holding humaneval_<lang>.jsonl.gz "
                           f"(python eval_humaneval_x.py fetch-data --data-dir DIR downloads them)")
    problems = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DatasetError(f"{path}, line {line_no}: not JSON ({e})") from None
                for key in ("task_id", "prompt", "declaration", "canonical_solution", "test"):
                    if key not in row:
                        raise DatasetError(f"{path}, line {line_no}: missing field {key!r}")
                problems[row["task_id"]] = row
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read gzip data ({e})") from None
    return problems


def problem_number(task_id: str) -> int:
    return int(task_id.split("/")[1])


def generation_prompt(problem: dict, lang: str) -> str:
    """What the model sees for the generation task: the language tag line, then the problem prompt.
    Rust's prompt holds only the doc comment, so the declaration (``use`` lines + signature) goes first, as the
    program is assembled."""
    body = problem["declaration"] + problem["prompt"] if lang == "rust" else problem["prompt"]
    return language_tag(CANONICAL[lang]) + "\n" + body


def translation_prompt(src_problem: dict, src_lang: str, tgt_problem: dict, tgt_lang: str) -> str:
    """The original's translation prompt (benchmark/utils.py: read_translation_dataset)."""
    return translate(src_problem["declaration"] + src_problem["canonical_solution"], CANONICAL[src_lang],
                     CANONICAL[tgt_lang], tgt_problem["declaration"])


def fetch(data_dir: str | Path, languages=LANGUAGES, base_url: str | None = None) -> list[Path]:
    """Download the data files of ``languages`` into ``data_dir``, verifying each sha256; existing verified files
    are kept. Returns the paths."""
    base = base_url or f"https://raw.githubusercontent.com/THUDM/CodeGeeX/{UPSTREAM_COMMIT}/codegeex/benchmark/humaneval-x"
    out = []
    for lang in languages:
        path = data_file(data_dir, lang)
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[lang]:
            out.append(path)
            continue
        url = f"{base}/{lang}/data/humaneval_{lang}.jsonl.gz"
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHA256[lang]:
            raise DatasetError(f"{url}: sha256 {digest} differs from the recorded {SHA256[lang]}; not saved")
        atomic_write_bytes(path, data)
        out.append(path)
    return out
