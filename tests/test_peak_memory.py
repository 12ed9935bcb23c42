"""peak_memory.run_script reports the child's own peak, not the high-water mark it inherits from its parent."""
from __future__ import annotations

import os
import subprocess
import sys

from codegeex_ms.peak_memory import peak_rss_bytes, run_script

MiB = 2**20


def test_a_child_of_a_large_process_reports_its_own_peak(tmp_path):
    ballast = bytearray(768 * MiB)
    ballast[::4096] = b"\1" * len(range(0, len(ballast), 4096))       # touch every page: resident
    assert peak_rss_bytes() >= 768 * MiB
    (tmp_path / "helper.py").write_text("VALUE = 7\n")
    (tmp_path / "script.py").write_text(
        "import sys\nimport helper\n"                                  # the script's folder is first on sys.path
        "block = bytearray(int(sys.argv[1]) * 2**20); block[::4096] = b'\\1' * len(range(0, len(block), 4096))\n"
        "sys.exit(helper.VALUE)\n")
    status, peak = run_script(tmp_path / "script.py", [96], stdout=subprocess.DEVNULL)
    assert status == 7
    assert 96 * MiB <= peak <= 400 * MiB, peak / MiB
    # what wait4 says of the same kind of child: at least the parent's size
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    _, _, usage = os.wait4(child.pid, 0)
    assert usage.ru_maxrss * 1024 >= 768 * MiB
    del ballast


def test_a_script_that_raises_still_reports(tmp_path):
    (tmp_path / "fails.py").write_text("raise ValueError('no')\n")
    status, peak = run_script(tmp_path / "fails.py", [], stderr=subprocess.PIPE)
    assert status == 1 and peak > 0
