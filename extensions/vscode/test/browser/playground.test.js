"use strict";
// serve.py's playground page (GET /) in headless Chromium: it asks for the key, streams a completion, shows errors.
const test = require("node:test");
const assert = require("node:assert/strict");
const {launch, screenshotPath} = require("./chromium");
const {sharedServer} = require("../serve_py");

const {url, key} = sharedServer();

// until the page says the run is done or shows an error
function finished(page) {
  return page.waitForFunction(() => document.getElementById("stats").textContent.startsWith("done")
                                    || document.getElementById("error").textContent.length > 0, null, {timeout: 120000});
}

test("the playground completes, translates and shows the server's errors", async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage({viewport: {width: 1200, height: 720}});
    await page.goto(url + "/");
    await page.waitForFunction(() => document.getElementById("server").textContent.includes("context"));
    const serverLine = await page.textContent("#server");
    assert.match(serverLine, /prompts up to \d+ tokens, up to \d+ new tokens/);

    // without the key: the server's 401 message on the page
    if (key) {
      assert.ok(await page.isVisible("#api_key"), "the page asks for the key when the server needs one");
      await page.click("#run");
      await page.waitForFunction(() => document.getElementById("error").textContent.length > 0);
      assert.match(await page.textContent("#error"), /HTTP 401: missing or wrong API key/);
      await page.fill("#api_key", key);
    }

    await page.fill("#code", "def fibonacci(n):\n");
    await page.fill("#temperature", "0");
    await page.fill("#max_tokens", "48");
    await page.click("#run");
    await finished(page);
    assert.equal(await page.textContent("#error"), "");
    const output = await page.textContent("#output");
    assert.ok(output.startsWith("def fibonacci(n):\n") && output.length > "def fibonacci(n):\n".length, output);
    const stats = await page.textContent("#stats");
    const pieces = Number(/(\d+) pieces/.exec(stats)[1]);
    assert.ok(pieces > 1, `streamed in pieces: ${stats}`);
    const shot = screenshotPath("playground.png");
    if (shot) await page.screenshot({path: shot});

    // translation: the task switches the language pickers, the answer streams into the output
    await page.selectOption("#task", "translate");
    assert.ok(await page.isVisible("#dst_lang") && !(await page.isVisible("#language")));
    await page.selectOption("#dst_lang", "C++");
    await page.fill("#code", "def add(a, b):\n    return a + b\n");
    await page.click("#run");
    await finished(page);
    assert.equal(await page.textContent("#error"), "");

    // a request the server refuses: its message, not a blank page
    await page.selectOption("#task", "complete");
    await page.fill("#max_tokens", "100000");
    await page.click("#run");
    await page.waitForFunction(() => document.getElementById("error").textContent.length > 0);
    assert.match(await page.textContent("#error"), /HTTP 400: max_tokens must be in 1\.\.\d+/);
  } finally {
    await browser.close();
  }
});
