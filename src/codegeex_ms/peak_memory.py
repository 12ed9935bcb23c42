"""A process's own peak resident memory, and a Python script run in a child that reports its own.

``wait4``'s (and ``getrusage``'s) ``ru_maxrss`` is not a child's own peak: Linux carries the high-water mark of the
memory a process had before ``exec`` into it, and a child made by ``fork`` or ``vfork`` (``subprocess`` uses both)
had its parent's. A 14 MiB ``python -c pass`` started from a process holding 2 GiB reports 2 GiB (measured), so a
memory test run inside a large pytest process measures pytest. ``VmHWM`` in ``/proc/PID/status`` belongs to the
address space, which ``exec`` replaces: read inside the child just before it ends, it is the child's own peak.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs argv[2] as __main__ with argv[3:] (as ``python SCRIPT ARGS`` would: its folder first on sys.path) and
# writes this process's VmHWM line to the file argv[1] however the script ends (return, sys.exit, exception).
_REPORTING_MAIN = """\
import os, runpy, sys
report, sys.argv = sys.argv[1], sys.argv[2:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open(report, "w") as out:
        out.write(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def peak_rss_bytes(pid: int | str = "self") -> int:
    """The peak resident memory of a live process (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM line")


def run_script(script: str | os.PathLike, args: list[str], **popen) -> tuple[int, int | None]:
    """Run ``python SCRIPT ARGS`` in a child (``popen``: stdout, stderr, env, ... for ``subprocess.run``) and return
    (its exit status, its own peak resident memory in bytes; None when it was killed before it could report)."""
    with tempfile.TemporaryDirectory(prefix="peak-memory-") as tmp:
        report = Path(tmp) / "vmhwm"
        status = subprocess.run([sys.executable, "-c", _REPORTING_MAIN, str(report), str(script), *map(str, args)],
                                **popen).returncode
        peak = int(report.read_text().split()[1]) * 1024 if report.exists() else None
    return status, peak
