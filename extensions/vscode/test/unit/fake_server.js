// A fake fetch that answers like serve.py and records the requests it got.
"use strict";

function fakeServer(handler) {
  const requests = [];
  const fetchImpl = async (url, init = {}) => {
    const request = {url, path: new URL(url).pathname, method: init.method || "GET", headers: init.headers || {},
                     body: init.body ? JSON.parse(init.body) : undefined, signal: init.signal};
    requests.push(request);
    if (init.signal && init.signal.aborted) throw init.signal.reason;
    const answer = await handler(request);
    if (answer instanceof Error) throw answer;
    const [status, body] = answer;
    return new Response(typeof body === "string" ? body : JSON.stringify(body), {status});
  };
  return {fetchImpl, requests};
}

// serve.py's answers for the paths the client uses
function servePy(request) {
  if (request.path === "/v1/prompt") {
    if (request.body.task === "complete") return [200, {prompt: "# language: Python\n", language: "Python", stop: [], lead: ""}];
    if (request.body.task === "explain") return [200, {prompt: "few-shot...\n# ", language: null, stop: ["\n\n"], lead: "# "}];
    return [200, {prompt: "code translation\nPython:\nx\nC++:\n", language: "C++", stop: [], lead: ""}];
  }
  if (request.path === "/v1/completions") return [200, {choices: [{text: "    return 1\n", index: 0}]}];
  if (request.path.startsWith("/multilingual")) return [200, {status: 0, result: {output: {code: ["X"]}}}];
  if (request.path === "/health") return [200, {model: "m", context: 1024, auth: false, languages: ["Python"],
                                                limits: {max_prompt_tokens: 1024, max_new_tokens: 512, max_n: 4}}];
  return [404, {error: {message: "not found"}}];
}

module.exports = {fakeServer, servePy};
