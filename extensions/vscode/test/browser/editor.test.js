"use strict";
// The real editor: VS Code for the web in headless Chromium with this extension; serve.py suggests, Tab accepts.
const test = require("node:test");
const assert = require("node:assert/strict");
const {launch, screenshotPath} = require("./chromium");
const {startEditor} = require("./vscode_web");
const {sharedServer} = require("../serve_py");

const {url: serverUrl, key} = sharedServer();

async function command(page, name) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input.input");
  await input.waitFor({state: "visible"});
  await input.fill(">" + name);
  // the row whose label is exactly `name` ("File: New Untitled Text File", not "File: Compare New Untitled ...")
  const exact = new RegExp("^" + name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "$");
  await page.locator(".quick-input-list .monaco-list-row")
    .filter({has: page.locator(".label-name", {hasText: exact})}).first().click();
}

async function editorText(page) {
  return (await page.locator(".monaco-editor .view-lines").first().innerText()).replace(/\u00a0/g, " ");
}

test("an inline suggestion from serve.py appears in VS Code for the web and Tab accepts it", async (t) => {
  const editor = await startEditor({"codegeex.serverUrl": serverUrl, "codegeex.temperature": 0,
                                    "codegeex.maxTokens": 24, "workbench.startupEditor": "none",
                                    "workbench.tips.enabled": false, "editor.inlineSuggest.enabled": true});
  const browser = await launch();
  const log = [];
  try {
    const page = await browser.newPage({viewport: {width: 1280, height: 760}});
    page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
    await page.goto(editor.url);
    await page.locator(".monaco-workbench").waitFor({timeout: 120000});
    // the extension is active once its status bar item is there
    const status = page.locator(".statusbar-item", {hasText: "CodeGeeX"});
    await status.first().waitFor({timeout: 120000});

    if (key) {
      await command(page, "CodeGeeX: Set API Key");
      const input = page.locator(".quick-input-widget input.input");
      await input.waitFor({state: "visible"});
      await input.fill(key);
      await page.keyboard.press("Enter");
    }
    await command(page, "File: New Untitled Text File");
    await command(page, "Change Language Mode");
    await page.locator(".quick-input-widget input.input").fill("python");
    await page.locator(".quick-input-list .monaco-list-row", {hasText: "(python)"}).first().click();
    await page.locator(".tabs-container .tab.active", {hasText: "Untitled-1"}).waitFor();
    assert.equal(await page.locator(".monaco-diff-editor").count(), 0, "a plain editor, not a diff");

    await page.locator(".monaco-editor textarea").first().focus();
    await page.keyboard.type("def is_prime(n):", {delay: 20});
    const ghost = page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text");
    const typed = await editorText(page);
    const keystroke = Date.now();
    await page.keyboard.press("Enter");
    await ghost.first().waitFor({timeout: 60000});
    // keystroke to visible suggestion: the debounce (codegeex.debounceMs, 250 ms) + the request + rendering
    const latencyMs = Date.now() - keystroke;
    t.diagnostic(`keystroke to suggestion: ${latencyMs} ms`);
    const suggestion = (await ghost.allInnerTexts()).join("");
    assert.ok(suggestion.trim().length > 0, "a visible suggestion");
    const shot = screenshotPath("vscode-web.png");
    if (shot) await page.screenshot({path: shot});

    await page.keyboard.press("Tab");
    await page.waitForFunction((before) => {
      const lines = document.querySelector(".monaco-editor .view-lines");
      return lines && lines.innerText.replace(/\u00a0/g, " ").length > before.length;
    }, typed, {timeout: 10000});
    // once the text changes VS Code asks the provider again, and with a fast server the next suggestion (for the
    // new position) may already show as ghost text, which the view's text includes: dismiss it, then read
    await page.keyboard.press("Escape");
    await page.waitForFunction(
      () => document.querySelectorAll(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text").length === 0,
      null, {timeout: 10000});
    const accepted = await editorText(page);
    assert.ok(accepted.startsWith("def is_prime(n):"), accepted);
    assert.ok(accepted.includes(suggestion.trim()), `the suggestion ${JSON.stringify(suggestion)} is in the text`);
    assert.ok(accepted.length > typed.length, `accepted: ${JSON.stringify(accepted)}`);
  } catch (e) {
    const shot = screenshotPath("vscode-web-failure.png") || "/tmp/vscode-web-failure.png";
    for (const p of browser.contexts().flatMap((c) => c.pages())) await p.screenshot({path: shot}).catch(() => {});
    t.diagnostic(`browser console (last 40):\n${log.slice(-40).join("\n")}\nscreenshot: ${shot}`);
    throw e;
  } finally {
    await browser.close();
    editor.close();
  }
});
