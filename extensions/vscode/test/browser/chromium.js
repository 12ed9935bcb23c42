// The system's Chromium (Debian's package) driven by playwright-core, which downloads no browser of its own.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const {chromium} = require("playwright-core");

function chromiumPath() {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(Boolean);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`no Chromium found (tried ${candidates.join(", ")}); apt-get install chromium or set CHROMIUM`);
  return found;
}

async function launch() {
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
  return chromium.launch({executablePath: chromiumPath(), headless: true, args: ["--no-sandbox"]});
}

/** Where screenshots go (SCREENSHOT_DIR, set by the pytest wrapper to docs/), or null to skip them. */
function screenshotPath(name) {
  const dir = process.env.SCREENSHOT_DIR;
  if (!dir) return null;
  fs.mkdirSync(dir, {recursive: true});
  return path.join(dir, name);
}

module.exports = {launch, screenshotPath};
