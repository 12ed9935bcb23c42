"""Do-nothing stand-ins for the Ascend runtime (CANN) libraries, generated from the installed MindSpore wheel.

MindSpore's DryRun compiles the graph of one rank of an N-device Ascend job in one process, with no device: the
collectives become dummies and nothing is executed. It still needs the device target Ascend, whose plugin
(``mindspore/lib/plugin/libmindspore_ascend.so.2`` and ``plugin/ascend/*.so``) links against about twenty CANN
libraries (``libascendcl.so``, ``libge_runner.so``, ``libhccl.so``, ...) and looks up more functions in them with
``dlsym``. None of that is installed on a machine without an Ascend card, so this module writes, for every
library the plugin needs and nothing on the machine provides, a stand-in whose functions return 0 (success):

- the symbols: every undefined, non-weak dynamic symbol of the plugin's libraries that no library of the wheel or
  of the system defines (``readelf --dyn-syms``), plus every name the plugin's code looks up at run time, found
  as strings with the CANN prefixes (``acl``, ``aclrt``, ``aclnn``, ``rt``, ``hccl``, ``hcom``, ``ge``, ...);
- a few calls return a usable value: ``aclrtGetSocName`` a SoC name, ``aclrtGetDeviceCount`` a count, the
  stream/event/context constructors a distinct non-null handle, ``aclrtGetMemInfo`` free and total bytes,
  ``aclGetRecentErrMsg`` an empty string;
- ``<root>/lib64/libascendcl.so`` holds them all (MindSpore derives the Ascend path from the file that defines
  ``aclrtMalloc`` and ``dlopen``s runtime libraries below it); every other missing library is an empty one that
  depends on it;
- ``init()`` imports the Python package ``hccl`` for its version: a two-line one under ``<root>/python`` does.

The list is derived from the wheel each time it changes (the cache key is the MindSpore version and the hash of
this file), never shipped. Building needs gcc, g++ and readelf (Debian packages ``gcc``, ``g++`` and ``binutils``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CORE = "libascendcl.so"
# MindSpore takes the Ascend path to be the part of libascendcl.so's path up to a "latest" or "cann" folder
LIBRARY_DIR = "latest/lib64"
SOC_NAME = "Ascend910B1"
CANN_VERSION = "8.0.0"
DEVICE_COUNT = 8
DEVICE_MEMORY_BYTES = 32 << 30
# names the plugin resolves with dlsym: its strings that look like CANN entry points
DLSYM_NAME = re.compile(rb"\b((?:acl|aclrt|aclnn|aclop|aclmdl|aclprof|rt|hccl|Hccl|hcom|Hcom|ge|Ge|aclgrph|"
                        rb"Msprof|msprof|aclDump|HcclComm)[A-Za-z0-9_]{2,80})\b")
# libraries the plugin dlopens by path below the Ascend path (lib64/libascendcl.so, lib64/driver/libascend_hal.so)
DLOPEN_NAME = re.compile(rb"(?:lib64/)?((?:[a-z_]+/)?lib[A-Za-z0-9_]+\.so)\b")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SYSTEM_LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")

# C bodies of the calls whose callers need a value, not just a 0 status (signatures of CANN's acl.h)
SPECIAL = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
static void *new_handle(void) { return calloc(1, 256); }
const char *aclrtGetSocName(void) { return "%(soc)s"; }
const char *aclGetRecentErrMsg(void) { return ""; }
int aclrtGetDeviceCount(uint32_t *count) { if (count) *count = %(count)d; return 0; }
int aclrtCreateStream(void **stream) { *stream = new_handle(); return 0; }
int aclrtCreateStreamWithConfig(void **stream, uint32_t priority, uint32_t flag) { *stream = new_handle(); return 0; }
int aclrtCreateEvent(void **event) { *event = new_handle(); return 0; }
int aclrtCreateEventWithFlag(void **event, uint32_t flag) { *event = new_handle(); return 0; }
int aclrtCreateEventExWithFlag(void **event, uint32_t flag) { *event = new_handle(); return 0; }
int aclrtCreateContext(void **context, int32_t device) { *context = new_handle(); return 0; }
int aclrtGetCurrentContext(void **context) { static void *c; if (!c) c = new_handle(); *context = c; return 0; }
int aclrtGetMemInfo(int attr, size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes) *free_bytes = %(memory)dULL; if (total_bytes) *total_bytes = %(memory)dULL; return 0; }
"""
# C++ singletons whose callers use the object: MindSpore 2.10's libd_collective.so registers its error strings in
# ge::StatusFactory::Instance()->err_desc_ (a std::map, inline code of CANN's header) while it is loaded, which
# `import mindspore` does; a stand-in returning 0 made that a null pointer (segmentation fault). The plugin is built
# with the pre-C++11 std::string ABI, so this file is too.
SPECIAL_CXX = r"""
#include <cstdint>
#include <map>
#include <string>
namespace ge {
class StatusFactory {
 public:
  static StatusFactory *Instance();
  std::map<uint32_t, std::string> err_desc_;
};
StatusFactory *StatusFactory::Instance() { static StatusFactory instance; return &instance; }
}  // namespace ge
"""
SPECIAL_NAMES = set(re.findall(r"^\S.*?\b(\w+)\(", SPECIAL.split("new_handle(void)")[1], re.M)) | {
    "_ZN2ge13StatusFactory8InstanceEv"}


class StandinError(RuntimeError):
    """The stand-ins cannot be built here (a missing tool, an unreadable wheel)."""


@dataclass
class Analysis:
    missing_sonames: list[str]
    functions: list[str]
    objects: list[str]


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StandinError(f"{name} not found: the Ascend stand-ins are built with it (apt-get install {package})")
    return path


def mindspore_dir() -> Path:
    spec = importlib.util.find_spec("mindspore")
    if spec is None or not spec.submodule_search_locations:
        raise StandinError("mindspore is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def mindspore_version() -> str:
    from importlib.metadata import version
    return version("mindspore")


def _readelf(*args: str) -> str:
    return subprocess.run([_tool("readelf", "binutils"), "-W", *args], capture_output=True, text=True,
                          check=True).stdout


def _is_x86_64(path: Path) -> bool:
    with open(path, "rb") as f:
        header = f.read(20)
    return header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 62     # EM_X86_64


def needed(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", _readelf("-d", str(path)))


def dynamic_symbols(path: Path) -> tuple[set[str], dict[str, str]]:
    """(defined names, {undefined non-weak name: FUNC/OBJECT/NOTYPE}) of an ELF's dynamic symbol table."""
    defined, undefined = set(), {}
    for line in _readelf("--dyn-syms", str(path)).splitlines():
        fields = line.split()
        if len(fields) < 8 or not fields[0].endswith(":"):
            continue
        kind, bind, ndx, name = fields[3], fields[4], fields[6], fields[7].split("@")[0]
        if ndx == "UND":
            if bind != "WEAK" and name:
                undefined[name] = kind
        elif name:
            defined.add(name)
    return defined, undefined


def plugin_libraries(root: Path) -> list[Path]:
    """The x86-64 shared libraries of the Ascend plugin (the wheel ships an aarch64 one too, never loaded here)."""
    plugin = root / "lib" / "plugin"
    libs = [plugin / "libmindspore_ascend.so.2", plugin / "libmindspore_ops_ascend.so"]
    libs += sorted((plugin / "ascend").rglob("*.so"))
    return [p for p in libs if p.is_file() and _is_x86_64(p)]


def analyse(root: Path | None = None) -> Analysis:
    """Which sonames and symbols the Ascend plugin needs that nothing on this machine provides."""
    root = root or mindspore_dir()
    libs = plugin_libraries(root)
    if not libs:
        raise StandinError(f"{root}: no Ascend plugin libraries (lib/plugin/libmindspore_ascend.so.2) in this wheel")
    wheel = {p.name: p for p in (root / "lib").rglob("*.so*") if p.is_file() and _is_x86_64(p)}
    wheel.update({p.name: p for p in root.glob("*.so") if p.is_file()})

    def locate(soname: str) -> Path | None:
        if soname in wheel:
            return wheel[soname]
        for d in SYSTEM_LIBRARY_DIRS:
            if Path(d, soname).is_file():
                return Path(d, soname)
        return None

    def provided_in_any_version(name: str) -> bool:        # libgomp.so is there as libgomp.so.1
        return any(k == name or k.startswith(name + ".") for k in wheel) or \
            any(any(Path(d).glob(name + "*")) for d in SYSTEM_LIBRARY_DIRS if Path(d).is_dir())

    missing, seen, queue = set(), set(), list(libs)
    while queue:                                 # the closure of NEEDED, from the plugin's libraries
        lib = queue.pop()
        if lib in seen:
            continue
        seen.add(lib)
        for soname in needed(lib):
            found = locate(soname)
            if found is None:
                missing.add(soname)
            elif found not in seen:
                queue.append(found)
    defined, undefined = set(), {}
    for lib in seen:
        d, u = dynamic_symbols(lib)
        defined |= d
        if str(lib).startswith(str(root)):
            for name, kind in u.items():
                undefined.setdefault(name, kind)
    looked_up = set()
    for lib in libs:
        data = lib.read_bytes()
        looked_up |= {m.decode() for m in DLSYM_NAME.findall(data)}
        for m in DLOPEN_NAME.findall(data):
            relative = m.decode()
            if not provided_in_any_version(Path(relative).name):
                missing.add(relative)
    objects = sorted(n for n, k in undefined.items() if k == "OBJECT" and n not in defined)
    functions = {n for n, k in undefined.items() if k != "OBJECT" and n not in defined}
    functions |= {n for n in looked_up if IDENTIFIER.match(n) and n not in defined}
    functions -= SPECIAL_NAMES | set(objects)
    return Analysis(sorted(missing), sorted(functions), objects)


def c_source(analysis: Analysis) -> str:
    lines = [SPECIAL % {"soc": SOC_NAME, "count": DEVICE_COUNT, "memory": DEVICE_MEMORY_BYTES}]
    # asm labels give C++ (mangled) names to C definitions
    for i, name in enumerate(analysis.functions):
        lines.append(f'int f{i}(void) __asm__("{name}");\nint f{i}(void) {{ return 0; }}')
    for i, name in enumerate(analysis.objects):
        lines.append(f'char o{i}[4096] __asm__("{name}") __attribute__((aligned(64))) = {{0}};')
    return "\n".join(lines) + "\n"


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return base / "codegeex-ms" / f"ascend-standins-{mindspore_version()}-{key}"


def environment(root: Path) -> dict[str, str]:
    """Environment variables that make a child process load the stand-ins in ``root`` (see ensure_standins)."""
    library_dir = str(root / LIBRARY_DIR)
    python_dir = str(root / "python")
    return {"LD_LIBRARY_PATH": os.pathsep.join(filter(None, [library_dir, os.environ.get("LD_LIBRARY_PATH")])),
            "PYTHONPATH": os.pathsep.join(filter(None, [python_dir, os.environ.get("PYTHONPATH")])),
            "ASCEND_HOME_PATH": str(root / "latest")}


def ensure_standins(root: Path | None = None) -> Path:
    """Build the stand-ins once per MindSpore version and source (cached) and return their folder: libraries in
    ``latest/lib64`` (first on LD_LIBRARY_PATH), the ``hccl`` package in ``python/``; see ``environment``."""
    target = root or cache_root()
    if (target / "ready").is_file():
        return target
    gcc = _tool("gcc", "gcc")
    gxx = _tool("g++", "g++")
    analysis = analyse()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / LIBRARY_DIR).mkdir(parents=True)
    source = tmp / "ascend_standin.c"
    source.write_text(c_source(analysis))

    def gcc_run(args: list[str], compiler: str = gcc) -> None:
        result = subprocess.run([compiler, "-fPIC", "-O0", "-w", *args], capture_output=True, text=True)
        if result.returncode:
            raise StandinError(f"{Path(compiler).name} could not build the Ascend stand-ins: {result.stderr[-800:]}")

    # libascendcl.so defines every name: MindSpore finds the Ascend path from the file that defines aclrtMalloc,
    # which must be <root>/lib64/libascendcl.so. Every other library depends on it, so a name looked up with
    # dlsym on that library's handle is found in its dependency.
    cxx_source = tmp / "ascend_standin_cxx.cc"
    cxx_source.write_text(SPECIAL_CXX)
    gcc_run(["-c", str(source), "-o", str(tmp / "ascend_standin.o")])
    gcc_run(["-D_GLIBCXX_USE_CXX11_ABI=0", "-c", str(cxx_source), "-o", str(tmp / "ascend_standin_cxx.o")], gxx)
    gcc_run(["-shared", str(tmp / "ascend_standin.o"), str(tmp / "ascend_standin_cxx.o"), "-o",
             str(tmp / LIBRARY_DIR / CORE), f"-Wl,-soname,{CORE}"], gxx)
    empty = tmp / "empty.c"
    empty.write_text("")
    for relative in analysis.missing_sonames:
        path = tmp / LIBRARY_DIR / relative
        if path.name == CORE:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        gcc_run(["-shared", str(empty), "-o", str(path), f"-Wl,-soname,{path.name}", "-Wl,--no-as-needed",
                 f"-L{tmp / LIBRARY_DIR}", f"-l:{CORE}"])
    (tmp / "python" / "hccl").mkdir(parents=True)
    (tmp / "python" / "hccl" / "__init__.py").write_text('"""Stand-in for CANN\'s hccl package (DryRun)."""\n')
    # init() reads hccl.sys_version.__sys_version__ (the CANN release) and checks nothing else
    (tmp / "python" / "hccl" / "sys_version.py").write_text(f'__sys_version__ = "{CANN_VERSION}"\n')
    (tmp / "ready").write_text(f"{len(analysis.functions)} functions, {len(analysis.objects)} objects, "
                               f"sonames: {' '.join(analysis.missing_sonames)}\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
