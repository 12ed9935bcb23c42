"use strict";
// The extension's client against a real serve.py on loopback (the repository's embedded model).
const test = require("node:test");
const assert = require("node:assert/strict");
const {Client, ServerError} = require("../../out/client");
const {DEFAULTS} = require("../../out/settings");
const {sharedServer, startServer} = require("../serve_py");

const {url, key} = sharedServer();
const settings = {...DEFAULTS, serverUrl: url};
const greedy = (api, maxTokens = 24) => ({api, temperature: 0, maxTokens});

function client(apiKey = key, overrides = {}) {
  return new Client(() => ({...settings, ...overrides}), async () => apiKey);
}

test("health names the model, the limits and the languages", async () => {
  const health = await client().health();
  assert.ok(health.model && health.context > 0 && health.limits.max_new_tokens > 0);
  assert.ok(health.languages.includes("Python") && health.languages.includes("C++"));
});

test("completion: both APIs answer, and greedy OpenAI completion is repeatable", async () => {
  const c = client();
  const prefix = "def fibonacci(n):\n";
  const first = await c.complete(prefix, "python", greedy("openai"));
  assert.equal(typeof first, "string");
  assert.ok(first.length > 0, "the embedded model completes a function header");
  assert.equal(await c.complete(prefix, "python", greedy("openai")), first);
  const viaCodegeex = await c.complete(prefix, "python", greedy("codegeex"));
  assert.equal(typeof viaCodegeex, "string");
});

test("translate and explain through both APIs", async () => {
  const c = client();
  const code = "def add(a, b):\n    return a + b\n";
  for (const api of ["openai", "codegeex"]) {
    const translated = await c.translate(code, "python", "cpp", greedy(api));
    assert.equal(typeof translated, "string", api);
    const explained = await c.explain(code, "python", greedy(api));
    // the answer starts with the comment the prompt opened, whatever the model wrote after it
    assert.ok(explained.startsWith("# "), `${api}: ${JSON.stringify(explained)}`);
  }
});

test("a wrong or missing key is refused with an auth error naming the fix", async () => {
  if (!key) return;   // the shared server runs with --api-key in tests/test_vscode.py
  for (const api of ["openai", "codegeex"]) {
    for (const wrong of ["wrong", null]) {        // null: no key at all
      await assert.rejects(client(wrong).complete("x = 1\n", "python", greedy(api)), (e) => {
        assert.ok(e instanceof ServerError);
        assert.equal(e.kind, "auth");
        assert.match(e.message, /refused the API key.*Set API Key/);
        return true;
      });
    }
  }
});

test("an unknown language is refused with the server's message", async () => {
  await assert.rejects(client().complete("x", "klingon", greedy("codegeex")),
                       (e) => e.kind === "refused" && /klingon/.test(e.message));
});

test("a server that stops answering times out; one that dies mid-request is reported unreachable", async () => {
  const own = await startServer(["--max-prompt-tokens", "64", "--max-new-tokens", "16"]);
  try {
    const c = new Client(() => ({...settings, serverUrl: own.url, timeoutMs: 1500}), async () => undefined);
    assert.equal(typeof (await c.complete("int main() {\n", "cpp", greedy("openai", 8))), "string");
    // frozen: the kernel still accepts the connection, nothing answers
    own.child.kill("SIGSTOP");
    await assert.rejects(c.complete("int x;\n", "cpp", greedy("openai", 8)), (e) => e.kind === "timeout");
    // killed while the request waits: the connection is torn down under it
    const slow = new Client(() => ({...settings, serverUrl: own.url, timeoutMs: 60000}), async () => undefined);
    const pending = slow.complete("int y;\n", "cpp", greedy("codegeex", 8));
    await new Promise((r) => setTimeout(r, 300));
    own.child.kill("SIGKILL");
    await assert.rejects(pending, (e) => {
      assert.equal(e.kind, "unreachable", e.message);
      assert.match(e.message, new RegExp(`cannot reach the server at ${own.url}`));
      return true;
    });
  } finally {
    own.child.kill("SIGKILL");
  }
});
