"""HumanEval-X execution cost: this project's harness vs the original harness's way, on the canonical solutions.

    python bench/eval.py [--languages python,cpp,java,js,go,rust] [--limit N] [--workers 2]

For each language, in the same run, both with warm caches (one-time builds excluded for both): (a)
``codegeex_ms.humaneval.execution.evaluate`` (sandboxed; C++ PCH, one warm Go cache per worker, prebuilt Rust
crates, tuned JVM flags), then (b) the original's per-language commands (the CodeGeeX repository's
``codegeex/benchmark/execution.py``) without a sandbox: ``g++ -std=c++11`` per sample, ``javac`` + ``java``,
``go test`` (vet on, as its default) per sample, one shared cargo project with ``cargo check`` + ``cargo test
--bin`` per sample (serialised by cargo's lock, as upstream), python/node per sample. Wall time, CPU time of all
child processes, and whether the verdicts are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from codegeex_ms.humaneval.dataset import LANGUAGES, load_problems, parse_languages  # noqa: E402
from codegeex_ms.humaneval.execution import EvalOptions, canonical_samples, evaluate, read_jsonl  # noqa: E402
from codegeex_ms.humaneval.programs import assemble  # noqa: E402
from codegeex_ms.humaneval.toolchains import GOPATH, write_offline_cargo_project  # noqa: E402

TIMEOUT = 120


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(argv, cwd, env=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -9, b"", b"timeout")


class Upstream:
    """The original harness's commands, one sample at a time per worker, no sandbox."""

    def __init__(self, lang: str, root: Path, js_modules: Path | None):
        self.lang, self.root, self.js_modules = lang, root, js_modules
        self.cargo_lock = threading.Lock()
        if lang == "rust":
            write_offline_cargo_project(root / "rust", "rust")
            (root / "rust" / "src" / "bin").mkdir()

    def passed(self, task_id: str, program: str) -> bool:
        lang, number = self.lang, task_id.split("/")[1]
        work = Path(tempfile.mkdtemp(dir=self.root))
        try:
            if lang == "python":
                (work / "test.py").write_text(program)
                return _run(["python3", "test.py"], work).returncode == 0
            if lang == "cpp":
                (work / "test.cpp").write_text(program)
                extra = ["-lcrypto", "-lssl"] if "162" in task_id else []
                if _run(["g++", "-std=c++11", "test.cpp"] + extra, work).returncode != 0:
                    return False
                return _run(["./a.out"], work).returncode == 0
            if lang == "java":
                (work / "Main.java").write_text(program)
                if _run(["javac", "Main.java"], work).returncode != 0:
                    return False
                return _run(["java", "-cp", ".", "Main"], work).returncode == 0
            if lang == "js":
                (work / "test.js").write_text(program)
                r = _run(["node", "test.js"], work, {"NODE_PATH": str(self.js_modules)})
                return not r.stderr and not r.stdout
            if lang == "go":
                (work / "main_test.go").write_text(program)
                r = _run(["go", "test", "main_test.go"], work, {"GO111MODULE": "off", "GOPATH": GOPATH,
                                                                 "GOCACHE": str(self.root / "gocache")})
                return r.returncode == 0
            if lang == "rust":
                project = self.root / "rust"
                name = f"t{number}_{work.name}"
                (project / "src" / "bin" / f"{name}.rs").write_text(program)
                env = {"CARGO_HOME": str(project / ".cargo-home")}
                with self.cargo_lock:     # cargo holds a build lock per project: upstream's workers serialise here
                    if _run(["cargo", "check", "--offline", "--bin", name], project, env).returncode != 0:
                        return False
                    return _run(["cargo", "test", "--offline", "--bin", name], project, env).returncode == 0
        finally:
            shutil.rmtree(work, ignore_errors=True)
        raise ValueError(lang)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets" / "humaneval-x")
    p.add_argument("--languages", default=",".join(LANGUAGES))
    p.add_argument("--limit", type=int, help="first N problems per language")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-eval-", dir="/var/tmp"))
    os.chmod(root, 0o711)          # the sandbox uids pass through to their job directories
    rows = []
    print("| language | programs | ours wall s | ours CPU s | original's way wall s | original's way CPU s | "
          "wall ratio | verdicts identical |\n|---|---|---|---|---|---|---|---|")
    try:
        for lang in parse_languages(args.languages):
            samples = canonical_samples(args.data_dir, (lang,))[:args.limit]
            out = root / f"ours_{lang}.jsonl"
            cpu0, t0 = _children_cpu(), time.perf_counter()
            # the default work dir: the toolchain cache (PCH, Rust crates, js-md5) is built once per machine
            evaluate(samples, out, args.data_dir, EvalOptions(languages=(lang,), workers=args.workers, upstream=True),
                     progress=False)
            ours_wall, ours_cpu = time.perf_counter() - t0, _children_cpu() - cpu0
            ours = {r["task_id"]: r["passed"] for r in read_jsonl(out)}
            problems = load_problems(args.data_dir, lang)
            js_modules = Path("/var/tmp/codegeex-ms-humaneval-toolchains/js/node_modules")
            upstream = Upstream(lang, root, js_modules)
            programs = [(s["task_id"], assemble(problems[s["task_id"]], s["generation"], lang, upstream=True))
                        for s in samples]
            upstream.passed(*programs[0])   # untimed: warms the Go build cache / builds the Rust crates once, as ours
            cpu0, t0 = _children_cpu(), time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                verdicts = list(pool.map(lambda tp: upstream.passed(*tp), programs))
            up_wall, up_cpu = time.perf_counter() - t0, _children_cpu() - cpu0
            theirs = {t: v for (t, _), v in zip(programs, verdicts)}
            differ = sorted(t for t in ours if ours[t] != theirs[t])
            row = {"language": lang, "programs": len(samples), "ours_wall_s": ours_wall, "ours_cpu_s": ours_cpu,
                   "upstream_wall_s": up_wall, "upstream_cpu_s": up_cpu, "differ": differ}
            rows.append(row)
            print(f"| {lang} | {len(samples)} | {ours_wall:.1f} | {ours_cpu:.1f} | {up_wall:.1f} | {up_cpu:.1f} | "
                  f"{ours_wall / up_wall:.2f} | {'yes' if not differ else 'no: ' + ', '.join(differ)} |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
