"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const {trimPrefix, worthSuggesting} = require("../../out/prompt");
const {Debouncer, sleep} = require("../../out/debounce");
const {Notifier} = require("../../out/notify");
const {ServerError} = require("../../out/client");
const {readSettings, languageEnabled, DEFAULTS} = require("../../out/settings");

test("trimPrefix keeps the end of the text and starts at a line start", () => {
  assert.equal(trimPrefix("short", 100), "short");
  const text = "aaaa\nbbbb\ncccc\n";
  assert.equal(trimPrefix(text, 12), "bbbb\ncccc\n");
  assert.equal(trimPrefix(text, 10), "bbbb\ncccc\n");     // the cut falls on a line start
  assert.equal(trimPrefix(text, 9), "cccc\n");
  // one line longer than the budget: its end, not nothing
  assert.equal(trimPrefix("x".repeat(50), 10), "x".repeat(10));
  assert.equal(trimPrefix("x".repeat(50) + "\n", 10), "x".repeat(9) + "\n");
});

test("worthSuggesting: not on an empty file, not in the middle of a word", () => {
  assert.equal(worthSuggesting("def f(", ")"), true);
  assert.equal(worthSuggesting("x = fo", "o + 1"), false);
  assert.equal(worthSuggesting("   \n", ""), false);
  assert.equal(worthSuggesting("def f():\n    ", ""), true);
});

test("Debouncer: only the last of quick calls goes through; an abort stops the wait", async () => {
  const debouncer = new Debouncer(() => 30);
  const results = await Promise.all([debouncer.wait(), sleep(5).then(() => debouncer.wait()),
                                     sleep(10).then(() => debouncer.wait())]);
  assert.deepEqual(results, [false, false, true]);
  const controller = new AbortController();
  const waiting = debouncer.wait(controller.signal);
  controller.abort();
  assert.equal(await waiting, false);
  assert.equal(await sleep(1000, AbortSignal.abort()), false);
});

test("Notifier: one message per problem until something succeeds", () => {
  const shown = [];
  const notifier = new Notifier((m) => shown.push(m));
  const down = new ServerError("unreachable", "down");
  for (let i = 0; i < 5; i++) notifier.report(down);
  assert.deepEqual(shown, ["down"]);
  notifier.report(new ServerError("auth", "bad key"));
  notifier.report(new ServerError("auth", "bad key"));
  assert.deepEqual(shown, ["down", "bad key"]);
  notifier.ok();
  notifier.report(down);
  assert.deepEqual(shown, ["down", "bad key", "down"]);
  // refusals differ by what was refused
  notifier.report(new ServerError("refused", "a"));
  notifier.report(new ServerError("refused", "b"));
  assert.equal(shown.length, 5);
});

test("readSettings checks each value and names the bad ones", () => {
  const values = {serverUrl: "http://host:9000/", api: "grpc", temperature: 9, maxTokens: 32, enabledLanguages: "py"};
  const {settings, problems} = readSettings((key) => values[key]);
  assert.equal(settings.serverUrl, "http://host:9000");
  assert.equal(settings.api, DEFAULTS.api);
  assert.equal(settings.temperature, DEFAULTS.temperature);
  assert.equal(settings.maxTokens, 32);
  assert.equal(problems.length, 3);
  assert.match(problems.join("\n"), /codegeex.api "grpc"[^]*codegeex.temperature 9[^]*enabledLanguages/);
  assert.match(readSettings((k) => (k === "serverUrl" ? "ftp://x" : undefined)).problems[0], /not an http\(s\) URL/);
  assert.ok(languageEnabled("go", ["*"]) && languageEnabled("go", ["go"]) && !languageEnabled("go", ["python"]));
});
