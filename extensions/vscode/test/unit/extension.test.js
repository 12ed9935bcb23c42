"use strict";
// extension.js with a mocked `vscode` module and a fake server behind globalThis.fetch.
const test = require("node:test");
const assert = require("node:assert/strict");
const Module = require("node:module");
const {createMock, documentAt, token} = require("./mock_vscode");
const {fakeServer, servePy} = require("./fake_server");

function activate(handler, config = {debounceMs: 20}) {
  const mock = createMock(config);
  const originalLoad = Module._load;
  Module._load = function (request, ...rest) {
    return request === "vscode" ? mock.vscode : originalLoad.call(this, request, ...rest);
  };
  const path = require.resolve("../../out/extension");
  delete require.cache[path];
  const server = fakeServer(handler);
  globalThis.fetch = server.fetchImpl;
  try {
    const extension = require(path);
    const api = extension.activate(mock.context);
    return {...mock, server, api, extension};
  } finally {
    Module._load = originalLoad;
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

test("activation registers the provider for every file, five commands and a status bar item", async () => {
  const {calls} = activate(servePy);
  await settle();
  assert.deepEqual(calls.providers[0].selector, {pattern: "**"});
  assert.deepEqual([...calls.commands.keys()].sort(), ["codegeex.explain", "codegeex.setApiKey", "codegeex.toggle",
                                                      "codegeex.translate", "codegeex.triggerCompletion"]);
  assert.ok(calls.status.visible);
  assert.match(calls.status.text, /sparkle/);
  assert.equal(calls.status.command, "codegeex.toggle");
});

test("typing gets one suggestion at the cursor from the server; typing on cancels the earlier one", async () => {
  const {vscode, calls, server} = activate(servePy);
  const provider = calls.providers[0].provider;
  const automatic = {triggerKind: vscode.InlineCompletionTriggerKind.Automatic};
  const first = documentAt(vscode, "def fib(n):\n    ");
  const firstToken = token();
  const pending = provider.provideInlineCompletionItems(first.document, first.position, automatic, firstToken);
  firstToken.cancel();                                           // the user typed on
  const second = documentAt(vscode, "def fib(n):\n    if");
  const items = await provider.provideInlineCompletionItems(second.document, second.position, automatic, token());
  assert.deepEqual(await pending, []);
  assert.equal(items.length, 1);
  assert.equal(items[0].insertText, "    return 1\n");
  assert.deepEqual(items[0].range.start, second.position);
  assert.equal(server.requests.filter((r) => r.path === "/v1/completions").length, 1);
  assert.equal(server.requests.find((r) => r.path === "/v1/completions").body.prompt,
               "# language: Python\ndef fib(n):\n    if");
});

test("a server that is down gives one notification for many keystrokes, and the status bar says so", async () => {
  const {vscode, calls} = activate(() => new TypeError("fetch failed"));
  const provider = calls.providers[0].provider;
  for (let i = 0; i < 5; i++) {
    const {document, position} = documentAt(vscode, "x = " + i + "\n");
    assert.deepEqual(await provider.provideInlineCompletionItems(document, position,
                                                                 {triggerKind: 1}, token()), []);
  }
  assert.equal(calls.errors.length, 1);
  assert.match(calls.errors[0], /cannot reach the server at http:\/\/127.0.0.1:8000/);
  assert.match(calls.status.text, /warning/);
});

test("the API key goes to secret storage, never to settings, and then into every request", async () => {
  const {vscode, calls, server} = activate(servePy);
  calls.inputBox = async (options) => { assert.equal(options.password, true); return "s3cret"; };
  await calls.commands.get("codegeex.setApiKey")();
  assert.equal(calls.secrets.get("codegeex.apiKey"), "s3cret");
  const {document, position} = documentAt(vscode, "def f():\n");
  await calls.providers[0].provider.provideInlineCompletionItems(document, position, {triggerKind: 0}, token());
  assert.equal(server.requests.at(-1).headers.Authorization, "Bearer s3cret");
  calls.inputBox = async () => "";
  await calls.commands.get("codegeex.setApiKey")();
  assert.equal(calls.secrets.has("codegeex.apiKey"), false);
});

test("translate opens the result beside the source in the picked language; explain in the same language", async () => {
  const {vscode, calls, server} = activate(servePy);
  vscode.window.activeTextEditor = {selection: {isEmpty: false}, document: {languageId: "python",
                                                                             getText: () => "def add(a, b): return a + b"}};
  calls.quickPick = async (items) => {
    assert.ok(!items.some((i) => i.languageId === "python"), "the source language is not offered");
    return items.find((i) => i.languageId === "cpp");
  };
  await calls.commands.get("codegeex.translate")();
  assert.deepEqual(calls.opened[0], {content: "    return 1\n", language: "cpp"});
  assert.equal(calls.shown[0].options.viewColumn, vscode.ViewColumn.Beside);
  assert.equal(server.requests.find((r) => r.path === "/v1/prompt").body.dst_lang, "cpp");
  await calls.commands.get("codegeex.explain")();
  assert.equal(calls.opened[1].language, "python");
  assert.equal(calls.errors.length, 0);
});

test("toggled off: no automatic suggestions (a manual trigger still works); a bad setting is named", async () => {
  const {vscode, calls, server, changeConfig} = activate(servePy);
  await calls.commands.get("codegeex.toggle")();
  assert.match(calls.status.text, /circle-slash/);
  const {document, position} = documentAt(vscode, "def f():\n");
  assert.deepEqual(await calls.providers[0].provider.provideInlineCompletionItems(document, position,
                                                                                 {triggerKind: 1}, token()), []);
  assert.equal(server.requests.filter((r) => r.path === "/v1/completions").length, 0);
  const manual = await calls.providers[0].provider.provideInlineCompletionItems(document, position,
                                                                               {triggerKind: 0}, token());
  assert.equal(manual.length, 1);
  changeConfig("temperature", "hot");
  assert.match(calls.warnings[0], /codegeex.temperature "hot" must be a number/);
});
