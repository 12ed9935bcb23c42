// Bundles the extension twice: for desktop VS Code (Node extension host) and for VS Code for the web (a web
// worker). Both use fetch, so the code is the same; only the platform differs. `tsc` (run first by
// `npm run build`) type-checks and writes out/, which the unit tests import.
import * as esbuild from "esbuild";

const common = {entryPoints: ["src/extension.ts"], bundle: true, external: ["vscode"], format: "cjs",
                target: "es2022", minify: false, sourcemap: false, logLevel: "warning"};
await esbuild.build({...common, platform: "node", outfile: "dist/extension.js"});
await esbuild.build({...common, platform: "browser", outfile: "dist/web/extension.js"});
