"""Starting serve.py in a child process on a free loopback port, for the tests that talk to a real server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(args: list[str], log: Path, timeout_s: float = 300) -> tuple[str, subprocess.Popen]:
    """serve.py with ``args`` (its output in ``log``); returns (base URL, process) once /health answers, or fails
    the test with the server's log."""
    import httpx
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, LOG_MF_PATH=str(log.parent)))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
    proc.kill()
    pytest.fail("server did not start:\n" + log.read_text())
