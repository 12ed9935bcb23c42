"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const {Client, ServerError} = require("../../out/client");
const {DEFAULTS} = require("../../out/settings");
const {fakeServer, servePy} = require("./fake_server");

const openai = {api: "openai", temperature: 0, maxTokens: 16};
const codegeex = {api: "codegeex", temperature: 0, maxTokens: 16};

function client(handler, key = undefined, settings = {}) {
  const server = fakeServer(handler);
  return {server, client: new Client(() => ({...DEFAULTS, ...settings}), async () => key, server.fetchImpl)};
}

test("openai completion: the tag line is asked once per language, the prefix follows it", async () => {
  const {server, client: c} = client(servePy, "k");
  assert.equal(await c.complete("def f():\n", "python", openai), "    return 1\n");
  await c.complete("def g():\n", "python", openai);
  const paths = server.requests.map((r) => r.path);
  assert.deepEqual(paths, ["/v1/prompt", "/v1/completions", "/v1/completions"]);
  const sent = server.requests[2];
  assert.equal(sent.body.prompt, "# language: Python\ndef g():\n");
  assert.equal(sent.body.language, "Python");
  assert.equal(sent.body.max_tokens, 16);
  assert.equal(sent.body.temperature, 0);
  assert.equal(sent.headers.Authorization, "Bearer k");
});

test("codegeex completion posts the extension's payload with the key in the body and reads output.code[0]", async () => {
  const {server, client: c} = client(servePy, "k");
  assert.equal(await c.complete("def f():\n", "python", codegeex), "X");
  const [sent] = server.requests;
  assert.equal(sent.path, "/multilingual_code_generate");
  assert.deepEqual({prompt: sent.body.prompt, lang: sent.body.lang, n: sent.body.n, apikey: sent.body.apikey},
                   {prompt: "def f():\n", lang: "python", n: 1, apikey: "k"});
  assert.ok(sent.body.temperature > 0, "the CodeGeeX endpoints refuse temperature 0");
});

test("translate and explain in both APIs", async () => {
  const {server, client: c} = client(servePy);
  assert.equal(await c.translate("x", "python", "cpp", openai), "    return 1\n");
  assert.deepEqual(server.requests[0].body, {task: "translate", code: "x", src_lang: "python", dst_lang: "cpp"});
  assert.equal(server.requests[1].body.language, "C++");
  // the explanation gets back the open comment its prompt ended with, and the prompt's stop
  assert.equal(await c.explain("x = 1", "python", openai), "# " + "    return 1\n");
  assert.deepEqual(server.requests[3].body.stop, ["\n\n"]);
  assert.equal(await c.translate("x", "python", "cpp", codegeex), "X");
  assert.equal(server.requests.at(-1).path, "/multilingual_code_translate");
  assert.equal(await c.explain("x", "python", codegeex), "X");
  assert.equal(server.requests.at(-1).path, "/multilingual_code_explain");
});

test("errors become ServerErrors with a message naming the problem", async () => {
  const cases = [
    [() => new TypeError("fetch failed"), "unreachable", /cannot reach the server at http:\/\/127.0.0.1:8000/],
    [() => [401, {error: {message: "missing or wrong API key"}}], "auth", /refused the API key.*Set API Key/],
    [() => [422, {error: {message: "temperature: too big", param: "temperature"}}], "refused", /HTTP 422.*temperature/],
    [() => [500, "Internal Server Error"], "server", /HTTP 500.*Internal Server Error/],
    [() => [200, {status: 1, message: "unknown language 'klingon'"}], "refused", /klingon/],
    [() => [200, "<html>"], "server", /did not answer JSON/],
  ];
  for (const [answer, kind, pattern] of cases) {
    const {client: c} = client(answer);
    const api = kind === "refused" && pattern.source.includes("klingon") ? codegeex : openai;
    await assert.rejects(c.complete("x", "klingon", api), (e) => {
      assert.ok(e instanceof ServerError, String(e));
      assert.equal(e.kind, kind);
      assert.match(e.message, pattern);
      return true;
    });
  }
});

test("a slow server times out; the caller's own cancel is an AbortError, not a problem", async () => {
  const never = (request) => new Promise((_, reject) => request.signal.addEventListener("abort",
                                                                                    () => reject(request.signal.reason)));
  const {client: slow} = client(never, undefined, {timeoutMs: 50});
  const keepAlive = setInterval(() => {}, 1000);      // AbortSignal.timeout's timer does not hold the process open
  await assert.rejects(slow.complete("x", "python", codegeex), (e) => e.kind === "timeout" && /within 0 s/.test(e.message));
  clearInterval(keepAlive);
  const {client: c} = client(never);
  const controller = new AbortController();
  const pending = c.complete("x", "python", codegeex, controller.signal);
  controller.abort();
  await assert.rejects(pending, (e) => e.name === "AbortError");
});

test("a prompt too long for the server is sent once more, halved at a line start", async () => {
  const prefix = Array.from({length: 100}, (_, i) => `line ${i}`).join("\n") + "\n";
  const {server, client: c} = client((request) => request.body.prompt.length > 500
    ? [400, {status: 1, message: "the prompt is 900 tokens; this server accepts at most 100"}]
    : servePy(request));
  assert.equal(await c.complete(prefix, "python", codegeex), "X");
  assert.equal(server.requests.length, 2);
  const retried = server.requests[1].body.prompt;
  assert.ok(prefix.endsWith(retried) && retried.length < prefix.length / 2 + 10, retried.length);
  assert.match(retried, /^line \d+\n/);
});

test("a failed tag-line request is asked again next time", async () => {
  let fail = true;
  const {server, client: c} = client((request) => (fail ? new TypeError("down") : servePy(request)));
  await assert.rejects(c.complete("x", "python", openai));
  fail = false;
  assert.equal(await c.complete("x", "python", openai), "    return 1\n");
  assert.equal(server.requests.filter((r) => r.path === "/v1/prompt").length, 2);
});
