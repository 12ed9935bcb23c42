"""serve.py driven by the clients people use, each installed from its registry: OpenAI's Python client (PyPI
openai), OpenAI's Node client (npm openai) and tabby-agent (npm), the language server every Tabby IDE plugin runs,
spoken to over its stdio as an editor does. (The text-generation client's tests are in test_serve.py.) The Node
clients come from tests/clients (npm ci --prefix tests/clients); without them, or without Node.js, those tests
skip."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from serving_process import start_serve

REPO = Path(__file__).resolve().parent.parent
CLIENTS = REPO / "tests" / "clients" / "node_modules"
KEY = "client-secret"
PROMPT = "# language: Python\ndef add(a, b):\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """serve.py with its defaults on the embedded model, behind an API key."""
    log = tmp_path_factory.mktemp("clients") / "server.log"
    url, proc = start_serve(["--api-key", KEY, "--max-new-tokens", "48"], log)
    yield url, log
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def direct(url: str, body: dict) -> dict:
    import httpx
    return httpx.post(url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=120).json()


def test_openai_python_client(server):
    openai = pytest.importorskip("openai")
    url, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY)
    model = client.models.list().data[0].id
    assert model == "codegeex-mini"
    plain = client.completions.create(model=model, prompt=PROMPT, max_tokens=24, temperature=0.8, seed=4, n=2)
    expected = direct(url, {"prompt": PROMPT, "max_tokens": 24, "temperature": 0.8, "seed": 4, "n": 2})
    assert [c.text for c in plain.choices] == [c["text"] for c in expected["choices"]]
    texts = ["", ""]
    stream = client.completions.create(model=model, prompt=PROMPT, max_tokens=24, temperature=0.8, seed=4, n=2,
                                       stream=True, stream_options={"include_usage": True})
    usage = None
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
        usage = chunk.usage or usage
    assert all(t.startswith(c.text) for t, c in zip(texts, plain.choices))
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens
    with pytest.raises(openai.BadRequestError, match="no fill-in-the-middle training"):
        client.completions.create(model=model, prompt="def f(", suffix="    return 1\n", max_tokens=8)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong").completions.create(model=model, prompt="x", max_tokens=2)


NODE_OPENAI = """
const OpenAI = require("openai");
(async () => {
  const env = process.env;
  const client = new OpenAI({baseURL: env.SERVER + "/v1", apiKey: env.KEY});
  const body = {model: "codegeex-mini", prompt: env.PROMPT, max_tokens: 24, temperature: 0.8, seed: 4};
  const plain = await client.completions.create(body);
  let streamed = "";
  for await (const chunk of await client.completions.create({...body, stream: true})) {
    for (const choice of chunk.choices) streamed += choice.text;
  }
  let refused = null;
  try { await client.completions.create({...body, suffix: "}"}); } catch (e) { refused = [e.status, e.message]; }
  console.log(JSON.stringify({plain: plain.choices[0].text, streamed, refused}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def node_client(name: str) -> Path:
    if not shutil.which("node") or not (CLIENTS / name).is_dir():
        pytest.skip(f"needs Node.js and {name} (npm ci --prefix tests/clients)")
    return CLIENTS / name


def test_openai_node_client(server, tmp_path):
    node_client("openai")
    url, _ = server
    result = subprocess.run(["node", "-e", NODE_OPENAI], capture_output=True, text=True, timeout=300,
                            cwd=REPO / "tests" / "clients", env=dict(os.environ, SERVER=url, KEY=KEY, PROMPT=PROMPT))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    expected = direct(url, {"prompt": PROMPT, "max_tokens": 24, "temperature": 0.8, "seed": 4})
    assert out["plain"] == expected["choices"][0]["text"] and out["streamed"].startswith(out["plain"])
    assert out["refused"][0] == 400 and "no fill-in-the-middle training" in out["refused"][1]


class LanguageServer:
    """tabby-agent --lsp --stdio, spoken to as an editor's LSP client does (Content-Length framed JSON-RPC)."""

    def __init__(self, home: Path):
        agent = node_client("tabby-agent") / "dist" / "cli.js"
        self.proc = subprocess.Popen(["node", str(agent), "--lsp", "--stdio"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, HOME=str(home)))
        self.responses: dict[int, dict] = {}
        self.arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, message: dict) -> None:
        data = json.dumps(dict(message, jsonrpc="2.0")).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def request(self, ident: int, method: str, params: dict, timeout: float = 120) -> dict:
        self.send({"id": ident, "method": method, "params": params})
        with self.arrived:
            assert self.arrived.wait_for(lambda: ident in self.responses, timeout), f"no answer to {method}"
            return self.responses[ident]

    def _read(self) -> None:
        while True:
            length = None
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(self.proc.stdout.read(length))
            if "method" in message and "id" in message:          # the agent asks the editor something
                self.send({"id": message["id"], "result": None})
            elif "id" in message:
                with self.arrived:
                    self.responses[message["id"]] = message
                    self.arrived.notify_all()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def tabby_completion(url: str, token: str, home: Path, patience: float = 120) -> dict:
    """A completion request through tabby-agent configured with ``url`` and ``token``, repeated for up to
    ``patience`` seconds until it offers something."""
    (home / ".tabby-client" / "agent").mkdir(parents=True)
    (home / ".tabby-client" / "agent" / "config.toml").write_text(
        f'[server]\nendpoint = "{url}"\ntoken = "{token}"\n')
    agent = LanguageServer(home)
    try:
        agent.request(1, "initialize", {"processId": os.getpid(), "rootUri": None,
                                        "capabilities": {"textDocument": {"completion": {}}},
                                        "clientInfo": {"name": "codegeex-ms tests", "version": "1"}})
        agent.send({"method": "initialized", "params": {}})
        text = "import os\n\ndef read(path):\n    with open(path) as f:\n        "
        agent.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": "file:///work/a.py", "languageId": "python", "version": 1, "text": text}}})
        deadline = time.time() + patience
        while True:                 # the agent answers empty until its health check of the server has returned
            answer = agent.request(int(time.time() * 1000), "textDocument/completion", {
                "textDocument": {"uri": "file:///work/a.py"}, "position": {"line": 4, "character": 8}})
            if (answer.get("result") or {}).get("items") or time.time() > deadline:
                return answer
            time.sleep(1)
    finally:
        agent.close()


def test_tabby_agent_completes_through_the_tabby_api(server, tmp_path):
    url, log = server
    answer = tabby_completion(url, KEY, tmp_path / "home")
    items = answer["result"]["items"]
    assert items and items[0]["labelDetails"]["description"] == "Tabby" and items[0]["textEdit"]["newText"].strip()
    calls = log.read_text()
    assert '"GET /v1/health HTTP/1.1" 200' in calls and '"POST /v1/completions HTTP/1.1" 200' in calls
    # with a wrong token the server answers 401 and the agent offers nothing
    refused = tabby_completion(url, "wrong", tmp_path / "other-home", patience=10)
    assert not (refused.get("result") or {}).get("items")
    assert '"GET /v1/health HTTP/1.1" 401' in log.read_text()


LM_EVAL = REPO / "tests" / "clients" / "lm-eval-venv" / "bin" / "lm_eval"
LM_EVAL_TASK = """task: codegeex_local_python
dataset_path: json
dataset_kwargs:
  data_files:
    test: {problems}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{canonical_solution}}}}"
generation_kwargs:
  until: ["\\ndef", "\\nclass", "\\nif", "\\nprint"]
  max_gen_toks: 24
  do_sample: false
  temperature: 0.0
metric_list:
  - metric: exact_match
"""


def test_lm_evaluation_harness_local_completions(server, shared_dir, tmp_path):
    """lm-eval 0.4.13's local-completions model on a local 4-problem task, 2 prompts per request (a list prompt):
    each generation equals the server's greedy answer to that prompt alone. lm-eval needs numpy 2, so it lives in
    its own environment: python -m venv tests/clients/lm-eval-venv && tests/clients/lm-eval-venv/bin/pip install
    'lm-eval[api]==0.4.13'."""
    if not LM_EVAL.exists():
        pytest.skip(f"lm-eval is not installed in {LM_EVAL.parent.parent}")
    from codegeex_ms.humaneval.dataset import load_problems
    problems = list(load_problems(shared_dir / "datasets" / "humaneval-x", "python").values())[:4]
    (tmp_path / "problems.jsonl").write_text("".join(json.dumps({"prompt": p["prompt"], "canonical_solution":
                                                                 p["canonical_solution"]}) + "\n" for p in problems))
    (tmp_path / "task.yaml").write_text(LM_EVAL_TASK.format(problems=tmp_path / "problems.jsonl"))
    url, log = server
    before = log.read_text().count('"POST /v1/completions HTTP/1.1" 200')
    result = subprocess.run([str(LM_EVAL), "run", "--model", "local-completions", "--model_args",
                             f"base_url={url}/v1/completions", "model=codegeex-mini", "tokenized_requests=False",
                             "tokenizer_backend=None", "--tasks", "codegeex_local_python", "--include_path",
                             str(tmp_path), "--batch_size", "2", "--output_path", str(tmp_path / "out"),
                             "--log_samples"], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env=dict(os.environ, OPENAI_API_KEY=KEY, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert log.read_text().count('"POST /v1/completions HTTP/1.1" 200') - before == 2       # 2 prompts each
    samples = [json.loads(line) for path in (tmp_path / "out").rglob("samples_*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(samples) == 4
    for sample in samples:
        prompt = sample["doc"]["prompt"]
        alone = direct(url, {"prompt": prompt, "max_tokens": 24, "temperature": 0,
                             "stop": ["\ndef", "\nclass", "\nif", "\nprint"]})
        assert sample["resps"][0][0] == alone["choices"][0]["text"]
