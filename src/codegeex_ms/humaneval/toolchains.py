"""The six toolchains: how each language compiles and runs a program, what it needs, and how to install it.

Everything comes from Debian and npm (no crates.io, no Go proxy): ``doctor`` checks each piece and prints the
install command for what is missing. Compiled artefacts shared by all samples are built once per run in the
workspace: a C++ precompiled header of the harness's include set, the Rust crates rand/regex/md5 (from Debian's
``librust-*-dev`` sources, offline), and a node_modules with ``js-md5``. Go runs in GOPATH mode against Debian's
testify, with one build cache per worker uid that persists in the cache directory. Toolchains are looked up on the
system PATH only (``/usr/local/bin:/usr/bin:/bin``), because the unprivileged sandbox uid cannot enter ``/root``.
"""
from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .programs import CPP_HEADER
from .sandbox import MINIMAL_PATH, ResourceLimits, Sandbox

# nodejs and npm are left to the doctor's per-tool lines: where Node.js came from NodeSource (which bundles npm),
# Debian's npm package conflicts with it and apt refuses the whole line
APT = ("apt-get install -y --no-install-recommends g++ libboost-dev libssl-dev openjdk-17-jdk-headless "
       "golang-go golang-github-stretchr-testify-dev rustc cargo librust-rand-dev librust-regex-dev "
       "'librust-regex+default-dev' librust-md5-dev python3-numpy")
GOPATH = "/usr/share/gocode"
CARGO_REGISTRY = "/usr/share/cargo/registry"
JS_MD5 = "js-md5@0.7.3"
RUST_CRATES = {"rand": "0.8", "regex": "1", "md5": "0.7"}
GO_WARM_PACKAGES = ("math", "strings", "fmt", "strconv", "time", "bytes", "regexp", "sort", "math/rand",
                    "crypto/md5", "unicode", "errors", "reflect", "container/heap", "container/list")


def write_offline_cargo_project(project: Path, name: str) -> None:
    """Cargo.toml depending on the HumanEval-X crates, and a cargo config that takes them from Debian's
    librust-*-dev sources offline."""
    (project / "src").mkdir(parents=True, exist_ok=True)
    (project / ".cargo").mkdir(exist_ok=True)
    deps = "".join(f'{crate} = "{version}"\n' for crate, version in RUST_CRATES.items())
    (project / "Cargo.toml").write_text(f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n'
                                       f"[dependencies]\n{deps}")
    (project / ".cargo" / "config.toml").write_text(
        '[source.crates-io]\nreplace-with = "debian"\n\n[source.debian]\n'
        f'directory = "{CARGO_REGISTRY}"\n\n[net]\noffline = true\n')


def which(name: str) -> str | None:
    return shutil.which(name, path=MINIMAL_PATH)


def _version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        text = (r.stdout + r.stderr).strip().splitlines()
        return text[0].strip() if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def doctor() -> list[Check]:
    """Check every toolchain piece; each failed check carries the command that installs it."""
    checks = []

    def check(name, ok, detail, fix):
        checks.append(Check(name, bool(ok), detail, "" if ok else fix))

    py = which("python3")
    numpy_ok = py and subprocess.run([py, "-c", "import numpy"], capture_output=True).returncode == 0
    check("python3 + numpy", numpy_ok, py or "python3 not on " + MINIMAL_PATH, "apt-get install -y python3-numpy")
    gxx = which("g++")
    check("g++", gxx, gxx or "missing", "apt-get install -y g++")
    check("Boost headers (boost/any.hpp)", Path("/usr/include/boost/any.hpp").is_file(), "/usr/include/boost",
          "apt-get install -y libboost-dev")
    check("OpenSSL headers (openssl/md5.h)", Path("/usr/include/openssl/md5.h").is_file(), "/usr/include/openssl",
          "apt-get install -y libssl-dev")
    for tool in ("javac", "java"):
        path = which(tool)
        check(tool, path, path or "missing", "apt-get install -y openjdk-17-jdk-headless")
    node, npm = which("node"), which("npm")
    check("node", node, node or "missing", "apt-get install -y nodejs")
    check("npm (to install js-md5 into the workspace)", npm, npm or "missing", "apt-get install -y npm")
    go = which("go")
    check("go", go, go or "missing", "apt-get install -y golang-go")
    testify = Path(GOPATH, "src/github.com/stretchr/testify/assert")
    check("testify (Debian, GOPATH mode)", testify.is_dir(), str(testify),
          "apt-get install -y golang-github-stretchr-testify-dev")
    rustc, cargo = which("rustc"), which("cargo")
    check("rustc", rustc, rustc or "missing (a rustup rustc under /root cannot be used by the sandbox uid)",
          "apt-get install -y rustc")
    check("cargo (builds the crates once, offline)", cargo, cargo or "missing", "apt-get install -y cargo")
    registry = Path(CARGO_REGISTRY)
    for crate in RUST_CRATES:
        found = sorted(registry.glob(f"{crate}-[0-9]*")) if registry.is_dir() else []
        check(f"crate {crate} (Debian)", found, str(found[-1]) if found else f"no {crate}-* in {registry}",
              f"apt-get install -y librust-{crate}-dev" + (" 'librust-regex+default-dev'" if crate == "regex" else ""))
    return checks


def versions() -> dict[str, str]:
    """Toolchain versions, recorded with every results file."""
    out = {}
    for name, argv in {"python3": ["python3", "--version"], "g++": ["g++", "--version"],
                       "javac": ["javac", "-version"], "java": ["java", "-version"], "node": ["node", "--version"],
                       "go": ["go", "version"], "rustc": ["rustc", "--version"]}.items():
        path = which(argv[0])
        out[name] = _version([path] + argv[1:]) if path else "missing"
    return out


class ToolchainError(RuntimeError):
    pass


@dataclass
class Step:
    argv: list[str]
    timeout: float
    limits: ResourceLimits
    env: dict = field(default_factory=dict)


@dataclass
class Recipe:
    """What to write and run for one program: source file name, compile step (optional), run step."""
    source: str
    compile: Step | None
    run: Step


class Toolchains:
    """Per-run shared artefacts (built lazily, once per language) and the per-language compile/run steps."""

    def __init__(self, sandbox: Sandbox, compile_timeout: float = 60, run_timeout: float = 15,
                 cache_dir: str | Path | None = None, run_timeouts: dict[str, float] | None = None):
        """``cache_dir`` keeps the shared artefacts between runs (default: next to the sandbox root, in
        ``codegeex-ms-humaneval-toolchains``); it must be readable by the sandbox uids (not under /root).
        ``run_timeouts``: a language's own run timeout, in place of ``run_timeout``."""
        self.sandbox = sandbox
        self.compile_timeout, self.run_timeout = compile_timeout, run_timeout
        self.run_timeouts = dict(run_timeouts or {})
        self.dir = Path(cache_dir) if cache_dir else sandbox.root.parent / "codegeex-ms-humaneval-toolchains"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self._prepared: set[str] = set()

    def _require(self, *tools: str) -> dict[str, str]:
        paths = {t: which(t) for t in tools}
        missing = [t for t, p in paths.items() if not p]
        if missing:
            raise ToolchainError(f"missing {', '.join(missing)} on {MINIMAL_PATH}; run "
                                 f"`python eval_humaneval_x.py doctor` for the install commands")
        return paths

    def prepare(self, lang: str) -> None:
        """Build the shared artefacts of ``lang`` (idempotent; call before running samples in parallel)."""
        if lang in self._prepared:
            return
        with open(self.dir / ".lock", "w") as lock:      # two runs sharing the cache build one at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            getattr(self, f"_prepare_{lang}")()
            self._make_readable()
        self._prepared.add(lang)

    def _make_readable(self):
        for root, dirs, files in os.walk(self.dir):
            dirs[:] = [d for d in dirs if not d.startswith("gocache-")]    # owned by the sandbox uids
            for name in dirs + files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | 0o444 | (0o111 if name in dirs else 0))

    def _build(self, argv, cwd, what, env=None, timeout=600):
        # trusted build steps keep the user's environment (npm/cargo configuration, proxies, CA files)
        r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PATH": MINIMAL_PATH, **(env or {})})
        if r.returncode != 0:
            raise ToolchainError(f"building {what} failed ({' '.join(argv)}):\n{(r.stdout + r.stderr)[-3000:]}")

    def _prepare_python(self):
        py = self._require("python3")["python3"]
        if subprocess.run([py, "-c", "import numpy"], capture_output=True).returncode != 0:
            raise ToolchainError(f"{py} cannot import numpy (the harness header imports it); "
                                 "apt-get install -y python3-numpy")

    def _prepare_cpp(self):
        self._require("g++")
        pch = self.dir / "cpp"
        pch.mkdir(exist_ok=True)
        header = "".join(line + "\n" for line in CPP_HEADER)
        if (pch / "hx.h.gch").is_file() and (pch / "hx.h").read_text() == header:
            return
        (pch / "hx.h").write_text(header)
        self._build(["g++", "-std=c++11", "-x", "c++-header", "hx.h", "-o", "hx.h.gch"], pch, "the C++ PCH")

    def _prepare_java(self):
        self._require("javac", "java")

    def _prepare_js(self):
        self._require("node")
        modules = self.dir / "js"
        if not (modules / "node_modules" / "js-md5").is_dir():
            self._require("npm")
            modules.mkdir(exist_ok=True)
            cache = self.dir / "npm-cache"
            self._build(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(modules),
                         "--cache", str(cache), JS_MD5], modules, "node_modules with js-md5")
            shutil.rmtree(cache, ignore_errors=True)

    def _prepare_go(self):
        self._require("go")
        if not Path(GOPATH, "src/github.com/stretchr/testify/assert").is_dir():
            raise ToolchainError("testify is missing: apt-get install -y golang-github-stretchr-testify-dev")
        # a build cache with the standard library, testify and every package the harness may import, compiled
        # once; each worker's cache starts as a copy (a cold cache costs tens of seconds per worker)
        seed = self.dir / "go-seed"
        if (seed / "warm").is_file():
            return
        shutil.rmtree(seed, ignore_errors=True)
        (seed / "src").mkdir(parents=True)
        imports = "".join(f'    _ "{p}"\n' for p in GO_WARM_PACKAGES)
        (seed / "src" / "warm_test.go").write_text(
            f'package main\n\nimport (\n    "testing"\n    "github.com/stretchr/testify/assert"\n{imports})\n\n'
            'func TestWarm(t *testing.T) { assert.New(t).True(true) }\n')
        self._build(["go", "test", "-c", "-vet=off", "-trimpath", "-o", "warm.test", "warm_test.go"], seed / "src",
                    "the Go build cache", env={"GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(seed / "cache"),
                                               "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"})
        (seed / "warm").write_text("ok\n")

    def _prepare_rust(self):
        self._require("rustc", "cargo")
        project = self.dir / "rust"
        write_offline_cargo_project(project, "hxdeps")
        if (project / "built").is_file():
            return
        (project / "src" / "lib.rs").write_text("")
        self._build(["cargo", "build", "--offline", "--quiet"], project, "the Rust crates rand/regex/md5",
                    env={"CARGO_HOME": str(project / ".cargo-home")})
        (project / "built").write_text("rand regex md5\n")

    @functools.cached_property
    def _rust_externs(self) -> list[str]:
        """rustc arguments linking the prebuilt crates (looked up once, after ``prepare("rust")``)."""
        deps = self.dir / "rust" / "target" / "debug" / "deps"
        args = ["-L", f"dependency={deps}"]
        for crate in RUST_CRATES:
            rlibs = sorted(deps.glob(f"lib{crate}-*.rlib"), key=lambda p: p.stat().st_mtime)
            if not rlibs:
                raise ToolchainError(f"the Rust crate {crate} was not built in {deps}")
            args += ["--extern", f"{crate}={rlibs[-1]}"]
        return args

    def recipe(self, lang: str, task_id: str, slot: int) -> Recipe:
        ct, rt = self.compile_timeout, self.run_timeouts.get(lang, self.run_timeout)
        native = ResourceLimits(cpu_seconds=int(rt) + 1)
        compiler = ResourceLimits(cpu_seconds=int(ct) + 1, address_space=None, file_size=256 << 20)
        if lang == "python":
            return Recipe("main.py", None, Step(["python3", "main.py"], rt, native))
        if lang == "cpp":
            link = ["-lcrypto"] if "162" in task_id else []    # upstream: -lcrypto -lssl when "162" in task_id
            return Recipe("main.cpp",
                          Step(["g++", "-std=c++11", "-include", str(self.dir / "cpp" / "hx.h"), "main.cpp",
                                "-o", "main"] + link, ct, compiler),
                          Step(["./main"], rt, native))
        if lang == "java":
            return Recipe("Main.java",
                          Step(["javac", "-J-Xmx1g", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1",
                                "-encoding", "UTF-8", "Main.java"], ct, compiler),
                          Step(["java", "-Xmx1g", "-Xss64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                                "-cp", ".", "Main"], rt, ResourceLimits(cpu_seconds=int(rt) + 1, address_space=None)))
        if lang == "js":
            return Recipe("test.js", None,
                          Step(["node", "--max-old-space-size=2048", "test.js"], rt,
                               ResourceLimits(cpu_seconds=int(rt) + 1, address_space=None),
                               {"NODE_PATH": str(self.dir / "js" / "node_modules")}))
        if lang == "go":
            # one build cache per worker uid, kept between runs: a cold cache compiles the standard library and
            # testify again (tens of seconds per worker)
            cache = self.dir / f"gocache-{self.sandbox.uid(slot) if self.sandbox.isolated else 'user'}"
            if not cache.is_dir():
                with open(self.dir / ".lock", "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    if not cache.is_dir():
                        tmp = cache.with_name(cache.name + ".tmp")
                        shutil.rmtree(tmp, ignore_errors=True)
                        shutil.copytree(self.dir / "go-seed" / "cache", tmp)
                        if self.sandbox.isolated:
                            uid = self.sandbox.uid(slot)
                            for root, dirs, files in os.walk(tmp):
                                for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                                    os.lchown(name, uid, uid)
                        tmp.rename(cache)
            env = {"GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(cache), "GOTOOLCHAIN": "local",
                   "CGO_ENABLED": "0", "GOMEMLIMIT": "2GiB"}
            return Recipe("main_test.go",
                          Step(["go", "test", "-c", "-vet=off", "-trimpath", "-o", "main.test", "main_test.go"],
                               ct, compiler, env),
                          Step(["./main.test", "-test.timeout", f"{int(rt)}s"], rt,
                               ResourceLimits(cpu_seconds=int(rt) + 1, address_space=None), {"GOMAXPROCS": "2"}))
        if lang == "rust":
            return Recipe("main.rs",
                          Step(["rustc", "--edition", "2021", "--test", "-C", "opt-level=0", "-C", "debuginfo=0",
                                "--cap-lints", "allow", *self._rust_externs, "main.rs", "-o", "main"], ct,
                               compiler),
                          Step(["./main", "--test-threads=1"], rt, native))
        raise ValueError(f"unknown HumanEval-X language {lang!r}")
