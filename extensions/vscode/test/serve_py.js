// Starting and stopping serve.py (the repository's server) for the tests that talk to a real one.
"use strict";
const {spawn} = require("node:child_process");
const net = require("node:net");
const path = require("node:path");

const REPO = path.resolve(__dirname, "..", "..", "..");

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** serve.py with the embedded model on a free loopback port; resolves once /health answers. */
async function startServer(args = [], timeoutMs = 300000) {
  const port = await freePort();
  const python = process.env.PYTHON || "python3";
  const child = spawn(python, [path.join(REPO, "serve.py"), "--port", String(port), "--log-level", "warning", ...args],
                      {cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: {...process.env, LOG_MF_PATH: "/tmp"}});
  let log = "";
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`serve.py exited with ${child.exitCode}:\n${log}`);
    try {
      if ((await fetch(url + "/health")).ok) return {url, child, log: () => log};
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 500));
  }
  child.kill("SIGKILL");
  throw new Error(`serve.py did not start within ${timeoutMs / 1000} s:\n${log}`);
}

/** The server the tests share: SERVER_URL (and SERVER_KEY) from the environment, as tests/test_vscode.py starts it. */
function sharedServer() {
  const url = process.env.SERVER_URL;
  if (!url) throw new Error("SERVER_URL is not set: run these tests through pytest tests/test_vscode.py, which " +
                            "starts serve.py");
  return {url, key: process.env.SERVER_KEY || undefined};
}

module.exports = {REPO, freePort, startServer, sharedServer};
