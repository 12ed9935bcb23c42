"""serve.py: the real server on a loopback port, talked to with a real HTTP client."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
from serving_process import KEY, client, read_stream, start_serve, stream_events  # noqa: E402
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    url, proc = start_serve(["--checkpoint", str(tiny_checkpoint), "--batch-size", "4", "--max-new-tokens", "32",
                             "--max-prompt-tokens", "100", "--api-key", KEY, "--log-level", "warning",
                             "--cors-origin", "http://editor.test"], log)
    yield url, proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    """serve.py with its defaults on the embedded (trained) model: its samples have lines, as real code does."""
    log = tmp_path_factory.mktemp("serve-embedded") / "server.log"
    url, proc = start_serve(["--max-new-tokens", "48", "--log-level", "warning"], log)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except Exception:
        proc.kill()


def test_completion_and_models(server):
    url, _, _ = server
    with client(url) as c:
        models = c.get("/v1/models").json()
        name = models["data"][0]["id"]
        r = c.post("/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 8, "temperature": 0,
                                             "model": name})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "text_completion" and len(body["choices"]) == 1
        assert body["usage"]["prompt_tokens"] > 0 and body["choices"][0]["finish_reason"] in ("stop", "length")
        again = c.post("/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 8, "temperature": 0}).json()
        assert again["choices"][0]["text"] == body["choices"][0]["text"]


def test_streaming_matches_the_plain_response(server):
    url, _, _ = server
    request = {"prompt": "int main() {", "max_tokens": 12, "temperature": 0.8, "seed": 7, "n": 2}
    with client(url) as c:
        plain = c.post("/v1/completions", json=request).json()
        with c.stream("POST", "/v1/completions", json=dict(request, stream=True)) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            texts, finished, done = read_stream(r, 2)
    assert done and len(finished) == 2
    for i, ch in enumerate(plain["choices"]):
        assert finished[i] == ch["finish_reason"]
        if ch["finish_reason"] == "length":
            assert texts[i] == ch["text"]
        else:       # a stop cut: the stream may have sent the text before the stop was recognised
            assert texts[i].startswith(ch["text"])
    assert any(ch["text"] for ch in plain["choices"])


def test_standard_fields_at_their_neutral_values_are_accepted(server):
    """The bodies of clients that send every OpenAI field (Tabby's OpenAI backend: suffix null, presence_penalty 0;
    Continue: penalties 0) get the same completion as the bare request; include_usage adds OpenAI's usage chunk."""
    url, _, _ = server
    bare = {"prompt": "def add(a, b):", "max_tokens": 8, "temperature": 0}
    neutral = dict(bare, suffix=None, presence_penalty=0, frequency_penalty=0.0, best_of=1, echo=False,
                   logprobs=None, user="editor")
    with client(url) as c:
        expected = c.post("/v1/completions", json=bare).json()["choices"][0]["text"]
        r = c.post("/v1/completions", json=neutral)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == expected
        assert c.post("/v1/completions", json=dict(neutral, suffix="")).status_code == 200
        with c.stream("POST", "/v1/completions",
                      json=dict(neutral, stream=True, stream_options={"include_usage": True})) as r:
            events = list(stream_events(r))
    assert events[-1] is None                                      # [DONE]
    assert "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"]) == expected
    assert not events[-2]["choices"] and events[-2]["usage"]["completion_tokens"] >= 1   # the usage chunk, last
    assert events[-2]["usage"]["total_tokens"] == events[-2]["usage"]["prompt_tokens"] + \
        events[-2]["usage"]["completion_tokens"]


def test_list_and_token_id_prompts_as_lm_eval_sends_them(server, tiny_checkpoint):
    """A list of prompts (texts or token ids) in one request: choices prompt-major (index = prompt x n + sample),
    each equal to the same prompt sent alone; usage sums them; streamed too."""
    from codegeex_ms.checkpoint import tokenizer_path
    from codegeex_ms.tokenizer import load
    url, _, _ = server
    tok = load(tokenizer_path(tiny_checkpoint))
    texts = ["def add(a, b):", "int main() {", "class Stack:"]
    base = {"max_tokens": 6, "temperature": 0.9, "seed": 11, "n": 2}
    with client(url) as c:
        alone = [c.post("/v1/completions", json=dict(base, prompt=t)).json() for t in texts]
        together = c.post("/v1/completions", json=dict(base, prompt=texts)).json()
        as_ids = c.post("/v1/completions", json=dict(base, prompt=[tok.encode(t) for t in texts])).json()
        one_ids = c.post("/v1/completions", json=dict(base, prompt=tok.encode(texts[1]))).json()
        with c.stream("POST", "/v1/completions", json=dict(base, prompt=texts, stream=True)) as r:
            streamed, _, done = read_stream(r, 6)
        bad = c.post("/v1/completions", json=dict(base, prompt=[[1, 2], [10**7]]))
    expected = [ch["text"] for a in alone for ch in a["choices"]]
    assert [ch["text"] for ch in together["choices"]] == expected and [ch["index"] for ch in together["choices"]] == \
        list(range(6))
    assert [ch["text"] for ch in as_ids["choices"]] == expected
    assert [ch["text"] for ch in one_ids["choices"]] == [ch["text"] for ch in alone[1]["choices"]]
    assert together["usage"]["completion_tokens"] == sum(a["usage"]["completion_tokens"] for a in alone)
    assert done and all(s.startswith(e) for s, e in zip(streamed, expected))
    assert bad.status_code == 400 and "prompt[1]: token id 10000000 is outside the vocabulary" in \
        bad.json()["error"]["message"]


def test_codegeex_endpoints(server):
    url, _, _ = server
    with client(url, key=None) as c:
        r = c.post("/multilingual_code_generate", json={"prompt": "def fib(n):\n", "n": 2, "lang": "Python",
                                                        "temperature": 0.8, "top_p": 0.95, "top_k": 0, "seed": 1,
                                                        "apikey": KEY, "max_tokens": 16})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == 0 and len(body["result"]["output"]["code"]) == 2
        assert body["result"]["process_time"] >= 0
        r = c.post("/multilingual_code_translate", json={"prompt": "def add(a, b):\n    return a + b\n",
                                                         "src_lang": "python", "dst_lang": "cpp", "n": 1,
                                                         "apikey": KEY, "max_tokens": 16, "seed": 2})
        assert r.status_code == 200 and r.json()["status"] == 0, r.text
        r = c.post("/multilingual_code_generate", json={"prompt": "x", "lang": "klingon", "apikey": KEY})
        assert r.status_code == 400 and r.json()["status"] == 1 and "klingon" in r.json()["message"]


def test_codegeex_adapt_and_block_endpoints(embedded_server):
    """The extension's automatic/interactive (_adapt) and prompt-mode (_block) calls, with its exact payload (no
    lang when the editor's language is unknown): _adapt after code on the cursor's line gives _block's sample cut
    at the end of that line; at a line start it gives _block's whole sample."""
    payload = {"n": 3, "apikey": "k", "apisecret": "s", "temperature": 0.8, "top_p": 0.95, "top_k": 0, "seed": 5,
               "max_tokens": 32}
    with client(embedded_server, key=None) as c:
        def codes(path, prompt):
            r = c.post(path, json=dict(payload, prompt=prompt))
            assert r.status_code == 200 and r.json()["status"] == 0, r.text
            return r.json()["result"]["output"]["code"]
        prefix = "import os\n\ndef read(path):\n    with open(path) as f:\n        data = "
        block = codes("/multilingual_code_generate_block", prefix)
        assert any("\n" in text for text in block)          # so the cut below is exercised
        assert codes("/multilingual_code_generate_adapt", prefix) == [text.split("\n")[0] for text in block]
        assert codes("/multilingual_code_generate_adapt", prefix + "f\n") == \
            codes("/multilingual_code_generate_block", prefix + "f\n")
        r = c.post("/multilingual_code_generate", json=dict(payload, prompt="x"))
        assert r.status_code == 400 and "lang: required for generate" in r.json()["message"]


@pytest.mark.parametrize("payload, status, needle", [
    ('{"prompt": "x", ', 400, "JSON"),
    ({"prompt": 5}, 422, "prompt"),
    ({"prompt": "x", "max_tokens": "many"}, 422, "max_tokens"),
    ({"prompt": "x", "bogus": 1}, 422, "bogus"),
    ({"prompt": ""}, 400, "prompt must not be empty"),
    ({"prompt": "x", "max_tokens": 1000}, 400, "max_tokens must be in 1..32"),
    ({"prompt": "x", "n": 9}, 400, "n must be in 1..8"),
    ({"prompt": "word " * 200}, 400, "at most 100"),
    ({"prompt": "x", "model": "gpt-4"}, 404, "not served here"),
    ({"prompt": "x", "temperature": -1}, 422, "temperature"),
    # what this model cannot do, named (minuet-ai.nvim and ProxyAI send a suffix)
    ({"prompt": "def f(", "suffix": "    return x\n"}, 400, "no fill-in-the-middle training: send the prefix only"),
    ({"prompt": "x", "presence_penalty": 0.5}, 400, "presence_penalty: this server applies no repetition penalties"),
    ({"prompt": "x", "frequency_penalty": 1}, 400, "frequency_penalty"),
    ({"prompt": "x", "best_of": 3}, 400, "best_of"),
    ({"prompt": "x", "echo": True}, 400, "echo"),
    ({"prompt": "x", "logprobs": 5}, 400, "logprobs"),
    ({"prompt": "x", "stream_options": {"chunk_size": 3}}, 400, "only include_usage"),
    # Twinny's openai-compatible provider sends Ollama's body
    ({"model": "m", "prompt": "x", "stream": False, "keep_alive": "5m", "options": {"temperature": 0.2,
                                                                                    "num_predict": 8}},
     400, "this is Ollama's request shape"),
])
def test_bad_requests_get_clear_errors(server, payload, status, needle):
    url, _, _ = server
    with client(url) as c:
        if isinstance(payload, str):
            r = c.post("/v1/completions", content=payload, headers={"Content-Type": "application/json"})
        else:
            r = c.post("/v1/completions", json=payload)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_chat_is_refused_with_the_reason(server):
    url, _, _ = server
    with client(url) as c:
        r = c.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "not chat- or instruction-tuned" in r.json()["error"]["message"]


def test_body_errors_name_no_field_and_codegeex_errors_keep_their_shape(server):
    url, _, _ = server
    with client(url) as c:
        r = c.post("/v1/completions", content='{"prompt": "x", ', headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["param"] is None
        assert r.json()["error"]["message"].startswith("the request body is not valid JSON")
        r = c.post("/v1/completions", content="", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "the request body is empty" in r.json()["error"]["message"], r.text
        # the extension sends no max_tokens: 128 is clamped to this server's --max-new-tokens (32)
        r = c.post("/multilingual_code_generate", json={"prompt": "def f():\n", "lang": "Python", "n": 1, "seed": 3})
        assert r.status_code == 200 and r.json()["status"] == 0, r.text
    with client(url, key="wrong") as c:
        r = c.post("/multilingual_code_generate", json={"prompt": "x", "lang": "Python", "apikey": "wrong"})
        assert r.status_code == 401 and r.json()["status"] == 1 and "API key" in r.json()["message"]


def test_auth(server):
    url, _, _ = server
    assert httpx.get(url + "/health").status_code == 200              # health stays open for probes
    for key in (None, "wrong"):
        with client(url, key) as c:
            r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
            assert c.get("/v1/models").status_code == 401


def test_page_health_and_cors_need_no_key(server):
    url, _, _ = server
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "codegeex-ms playground" in page.text and "/v1/completions" in page.text
    health = httpx.get(url + "/health").json()
    assert health["auth"] is True and health["context"] > 0
    assert health["limits"] == {"max_prompt_tokens": 100, "max_new_tokens": 32, "max_n": 8}
    assert "Python" in health["languages"] and "C++" in health["languages"]
    # a browser's preflight is answered before the key check; other origins get no permission
    preflight = httpx.options(url + "/v1/completions", headers={
        "Origin": "http://editor.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "http://editor.test"
    refused = httpx.post(url + "/v1/completions", json={"prompt": "x"}, headers={"Origin": "http://editor.test"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "http://editor.test"
    other = httpx.post(url + "/v1/completions", json={"prompt": "x"}, headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in other.headers


def test_prompt_endpoint_and_explain_follow_the_cli_policy(server):
    from codegeex_ms import prompts
    url, _, _ = server
    with client(url) as c:
        r = c.post("/v1/prompt", json={"task": "complete", "code": "def f(x):", "language": "py"})
        # an editor's prefix ends at the cursor: no newline added (infer.py adds one for a typed line)
        assert r.json() == {"prompt": "# language: Python\ndef f(x):", "language": "Python", "stop": [], "lead": ""}
        assert c.post("/v1/prompt", json={"task": "complete", "code": "", "language": "shellscript"}).json()[
            "prompt"] == "# language: Shell\n"
        explain = c.post("/v1/prompt", json={"task": "explain", "code": "x = 1", "language": "python"}).json()
        assert explain == {"prompt": prompts.explain("x = 1", "python"), "language": None, "stop": ["\n\n"],
                           "lead": "# "}
        translate = c.post("/v1/prompt", json={"task": "translate", "code": "x = 1", "src_lang": "python",
                                               "dst_lang": "cpp"}).json()
        assert translate["prompt"] == prompts.translate("x = 1", "python", "cpp") and translate["language"] == "C++"
        for body, needle in [({"task": "translate", "code": "x", "src_lang": "python"}, "dst_lang: required"),
                             ({"task": "explain", "code": "x"}, "language: required"),
                             ({"task": "explain", "code": "x", "language": "klingon"}, "klingon")]:
            r = c.post("/v1/prompt", json=body)
            assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
        assert c.post("/v1/prompt", json={"task": "summarise", "code": "x"}).status_code == 422
        # the explain endpoint builds the few-shot prompt, longer than this server's 100-token limit (its answers
        # are checked against a larger server in tests/test_vscode.py)
        r = c.post("/multilingual_code_explain", json={"prompt": "x = 1\n", "lang": "python", "n": 1, "seed": 4,
                                                       "max_tokens": 8})
        assert r.status_code == 400 and r.json() == {"status": 1, "message": "the prompt is 159 tokens; this server "
                                                                             "accepts at most 100"}, r.text
    assert httpx.post(url + "/v1/prompt", json={"task": "complete", "code": "x"}).status_code == 401


def test_concurrent_requests_get_their_own_results(server):
    url, _, _ = server
    requests = [{"prompt": p, "max_tokens": 10, "temperature": 0.9, "seed": s}
                for p, s in [("def a():", 1), ("class B:", 2), ("int c = ", 3), ("func d() {", 4), ("let e =", 5)]]
    with client(url) as c:
        solo = [c.post("/v1/completions", json=r).json()["choices"][0]["text"] for r in requests]
    together = [None] * len(requests)

    def worker(i):
        with client(url) as c:
            together[i] = c.post("/v1/completions", json=requests[i]).json()["choices"][0]["text"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == solo
    with client(url) as c:
        assert c.get("/health").json()["decode_steps"] >= 1


def test_disconnect_cancels_the_work(server):
    url, _, _ = server
    with client(url) as c:
        before = c.get("/health").json()["cancelled"]
        with c.stream("POST", "/v1/completions", json={"prompt": "def f():", "max_tokens": 32, "stream": True,
                                                      "temperature": 0.9, "seed": 3}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break                                          # first token arrived: hang up
        deadline = time.time() + 30
        while c.get("/health").json()["cancelled"] == before and time.time() < deadline:
            time.sleep(0.2)
        health = c.get("/health").json()
    assert health["cancelled"] == before + 1


def test_sixteen_streaming_clients_some_hanging_up(server):
    """16 concurrent streaming clients on a batch of 4 rows (rows refilled as requests finish), every fourth one
    hanging up after its first token: every completed stream equals the same request sent alone, no request fails,
    the hung-up requests are cancelled, and the server still answers."""
    url, _, _ = server
    prompts = ["def add(a, b):", "int main() {", "class Stack:", "func Sum(xs []int) int {"]
    requests = [{"prompt": prompts[i % 4], "max_tokens": 6 + i % 5, "temperature": 0.9, "seed": 40 + i, "n": 1 + i % 2}
                for i in range(16)]
    with client(url) as c:
        solo = [[ch["text"] for ch in c.post("/v1/completions", json=r).json()["choices"]] for r in requests]
        before = c.get("/health").json()
    streamed, errors = [None] * 16, []

    def worker(i):
        try:
            with client(url) as c, c.stream("POST", "/v1/completions", json=dict(requests[i], stream=True)) as r:
                assert r.status_code == 200
                if i % 4 == 3:
                    read_stream(r, requests[i]["n"], hang_up=True)      # hang up after the first chunk
                    return
                texts, _, done = read_stream(r, requests[i]["n"])
                streamed[i] = texts if done else None
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    for i in range(16):
        if i % 4 != 3:
            # a stop rule may cut the plain text after the stream sent it (see the streaming test)
            assert all(s.startswith(p) for s, p in zip(streamed[i], solo[i])), (i, streamed[i], solo[i])
    with client(url) as c:
        deadline = time.time() + 60
        while c.get("/health").json()["in_flight"] and time.time() < deadline:
            time.sleep(0.2)
        health = c.get("/health").json()
        assert health["in_flight"] == 0 and health["requests"] == before["requests"] + 16
        assert health["cancelled"] - before["cancelled"] <= 4          # a hung-up request may have finished first
        assert c.post("/v1/completions", json=requests[0]).json()["choices"][0]["text"] == solo[0][0]


# ---------------------------------------------------------------------------------------------------------
# Text Generation Inference's API, driven by its own client (PyPI text-generation), and llm-ls's body

def test_tgi_generate_and_stream_with_the_text_generation_client(embedded_server):
    text_generation = pytest.importorskip("text_generation")
    tgi = text_generation.Client(embedded_server, timeout=120)
    prompt = "# language: Python\ndef add(a, b):\n"
    greedy = tgi.generate(prompt, max_new_tokens=16)                  # POST /: greedy, with details
    with client(embedded_server, key=None) as c:
        openai = c.post("/v1/completions", json={"prompt": prompt, "max_tokens": 16, "temperature": 0}).json()
        assert greedy.generated_text == openai["choices"][0]["text"]
        # sampling with a seed draws the sample /v1/completions draws with that seed
        sampled = tgi.generate(prompt, max_new_tokens=16, do_sample=True, temperature=0.8, top_p=0.95, seed=3)
        same = c.post("/v1/completions", json={"prompt": prompt, "max_tokens": 16, "temperature": 0.8,
                                               "top_p": 0.95, "seed": 3}).json()
        assert sampled.generated_text == same["choices"][0]["text"] and sampled.details.seed == 3
        # llm-ls's tgi backend body on /generate
        r = c.post("/generate", json={"inputs": prompt, "parameters": {"max_new_tokens": 16, "temperature": 0.8,
                                                                        "do_sample": True, "top_p": 0.95, "seed": 3,
                                                                        "return_full_text": False}})
        assert r.status_code == 200 and r.json() == {"generated_text": same["choices"][0]["text"]}, r.text
    details = greedy.details
    assert details.generated_tokens == len(details.tokens) and details.finish_reason.value in ("length", "eos_token")
    assert "".join(t.text for t in details.tokens).startswith(greedy.generated_text[:8])
    events = list(tgi.generate_stream(prompt, max_new_tokens=16))    # POST / with stream: true
    last = events[-1]
    assert last.generated_text == greedy.generated_text
    assert (last.details.generated_tokens, last.details.finish_reason) == (details.generated_tokens,
                                                                           details.finish_reason)
    assert "".join(e.token.text for e in events).startswith(greedy.generated_text)
    assert all(e.generated_text is None for e in events[:-1])
    full = tgi.generate(prompt, max_new_tokens=4, return_full_text=True)
    assert full.generated_text.startswith(prompt)
    with pytest.raises(text_generation.errors.ValidationError, match="repetition_penalty: this server applies no"):
        tgi.generate(prompt, repetition_penalty=1.3)
    with pytest.raises(text_generation.errors.ValidationError, match="parameters.max_new_tokens must be in 1..48"):
        tgi.generate(prompt, max_new_tokens=1000)


def test_tgi_api_key_and_error_shape(server):
    text_generation = pytest.importorskip("text_generation")
    url, _, _ = server
    ok = text_generation.Client(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert ok.generate("x = ", max_new_tokens=4).details.generated_tokens >= 1
    r = httpx.post(url + "/generate", json={"inputs": "x = "})
    assert r.status_code == 401 and r.json()["error_type"] == "authentication"
    assert httpx.get(url + "/").status_code == 200                  # the playground stays open
    with client(url) as c:
        r = c.post("/generate_stream", json={"inputs": "x", "parameters": {"grammar": {"type": "json"}}})
        assert r.status_code == 422 and r.json() == {"error": "parameters.grammar: no constrained decoding (send "
                                                              "None or leave it out)", "error_type": "validation"}
        r = c.post("/generate", json={"inputs": "x", "bogus": 1})
        assert r.status_code == 422 and r.json()["error"].startswith("bogus")


# ---------------------------------------------------------------------------------------------------------
# Tabby's API, with the bodies its tabby-agent sends

TABBY_BODY = {"language": "python", "segments": {"prefix": "import os\n\ndef read(path):\n    with open(path) as f:\n",
                                                  "suffix": "\n\nprint(read('x'))\n", "filepath": "a.py",
                                                  "git_url": "", "declarations": [], "clipboard": ""},
              "user": "someone", "temperature": 0.8, "seed": 7, "mode": "standard"}


def test_tabby_completion_health_and_events(embedded_server):
    with client(embedded_server, key=None) as c:
        r = c.post("/v1/completions", json=TABBY_BODY)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert set(answer) == {"id", "choices"} and answer["choices"][0]["index"] == 0
        # the same draw as the OpenAI form on the tagged prefix with the language's rule
        prefix = TABBY_BODY["segments"]["prefix"]
        same = c.post("/v1/completions", json={"prompt": "# language: Python\n" + prefix, "max_tokens": 48,
                                               "temperature": 0.8, "top_p": 1.0, "seed": 7,
                                               "language": "python"}).json()
        assert answer["choices"][0]["text"] == same["choices"][0]["text"]
        # after code on the cursor's line: the rest of that line only
        mid = dict(TABBY_BODY, segments={"prefix": prefix + "        data = "})
        assert "\n" not in c.post("/v1/completions", json=mid).json()["choices"][0]["text"]
        assert c.post("/v1/completions", json={"segments": {}}).status_code == 422
        health = c.get("/v1/health").json()
        assert health["model"] == "codegeex-mini" and health["device"] == "cpu" and health["cpu_count"] >= 1
        assert health["version"]["git_describe"].startswith("codegeex-ms ")
        assert c.post("/v1/events", json={"type": "view", "completion_id": answer["id"]}).status_code == 200


def test_server_side_language_tag(tiny_checkpoint, tmp_path):
    """--tag-language puts the named language's tag line in front of a raw prefix (not twice); --default-language
    names it for requests that do not."""
    url, proc = start_serve(["--checkpoint", str(tiny_checkpoint), "--max-new-tokens", "8", "--tag-language",
                             "--default-language", "py", "--log-level", "warning"], tmp_path / "server.log")
    try:
        with client(url, key=None) as c:
            def text(**body):
                r = c.post("/v1/completions", json=dict(body, max_tokens=8, temperature=0))
                assert r.status_code == 200, r.text
                return r.json()["choices"][0]["text"]
            tagged = text(prompt="# language: Python\ndef f(x):\n")
            assert text(prompt="def f(x):\n") == tagged == text(prompt="def f(x):\n", language="python")
            assert text(prompt="int f(int x) {\n", language="cpp") == text(prompt="// language: C++\nint f(int x) {\n",
                                                                            language="cpp")
            assert text(prompt="int f(int x) {\n", language="cpp") != text(prompt="int f(int x) {\n")
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_finishes_in_flight_requests(server):
    url, proc, log = server
    result = {}

    def worker():
        with client(url) as c:
            result["r"] = c.post("/v1/completions", json={"prompt": "def slow():", "max_tokens": 32,
                                                          "temperature": 0})
    t = threading.Thread(target=worker)
    t.start()
    with client(url) as c:
        while c.get("/health").json()["in_flight"] == 0 and t.is_alive():
            time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    t.join(120)
    assert result["r"].status_code == 200, result["r"].text
    assert proc.wait(60) in (0, -signal.SIGTERM), log.read_text()   # uvicorn re-raises the signal it caught
    assert "engine stopped after" in log.read_text()
