"""Starting serve.py in a child process on a free loopback port, for the tests that talk to a real server."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KEY = "test-secret"          # the API key the test servers are started with


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


def client(url, key=KEY):
    """An HTTP client of the server at ``url``, sending ``key`` as its bearer token (None: no key)."""
    import httpx
    return httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"} if key else {})


def stream_events(response):
    """A streamed completion's events (parsed JSON), in order, then None if the stream ended with [DONE]."""
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            yield None
            return
        yield json.loads(line[6:])


def read_stream(response, choices: int, hang_up: bool = False) -> tuple[list[str], dict, bool]:
    """A streamed completion's text per choice index, its finish reasons, and whether it ended with [DONE];
    ``hang_up``: stop reading after the first text event, as a client that goes away."""
    texts, finished = [""] * choices, {}
    for event in stream_events(response):
        if event is None:
            return texts, finished, True
        if not event["choices"]:                                   # include_usage's last event
            continue
        choice = event["choices"][0]
        texts[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            finished[choice["index"]] = choice["finish_reason"]
        if hang_up:
            break
    return texts, finished, False
