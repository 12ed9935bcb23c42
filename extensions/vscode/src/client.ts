// Talking to serve.py: OpenAI-style /v1/completions or the CodeGeeX extension's endpoints. No vscode import, so
// the unit tests run it under Node with a fake fetch, and the same code runs in VS Code for the web.
import {trimPrefix} from "./prompt";
import {Api, Settings} from "./settings";

export type ErrorKind = "unreachable" | "auth" | "refused" | "server" | "timeout";

/** A failed request, with a message a user can act on. */
export class ServerError extends Error {
  constructor(readonly kind: ErrorKind, message: string, readonly status?: number, readonly param?: string) {
    super(message);
    this.name = "ServerError";
  }
}

export interface Health {
  model: string;
  context: number;
  auth: boolean;
  limits: {max_prompt_tokens: number; max_new_tokens: number; max_n: number};
  languages: string[];
}

export interface Options {
  api: Api;
  temperature: number;
  maxTokens: number;
}

type Fetch = typeof fetch;

export class Client {
  // the language tag line each VS Code language id gets in OpenAI mode, asked of the server once
  private readonly tagLines = new Map<string, Promise<{prefix: string; language: string | null}>>();

  constructor(private readonly settings: () => Settings, private readonly apiKey: () => Promise<string | undefined>,
              private readonly fetchImpl: Fetch = (...args) => fetch(...args)) {}

  private get url(): string {
    return this.settings().serverUrl;
  }

  async health(signal?: AbortSignal): Promise<Health> {
    return (await this.call("GET", "/health", undefined, signal)) as Health;
  }

  /** The completion of `prefix` (the document up to the cursor) in VS Code language `languageId`. */
  async complete(prefix: string, languageId: string, options: Options, signal?: AbortSignal): Promise<string> {
    try {
      return await this.completeOnce(prefix, languageId, options, signal);
    } catch (e) {
      // too long for the server's prompt or context limit: once more with the later half of the prefix
      if (e instanceof ServerError && e.kind === "refused" && tooLong(e) && prefix.length > 200) {
        return await this.completeOnce(trimPrefix(prefix, Math.floor(prefix.length / 2)), languageId, options, signal);
      }
      throw e;
    }
  }

  private async completeOnce(prefix: string, languageId: string, options: Options, signal?: AbortSignal) {
    if (options.api === "codegeex") {
      return this.codegeex("/multilingual_code_generate", {prompt: prefix, lang: languageId}, options, signal);
    }
    const tag = await this.tagLine(languageId, signal);
    return this.openai(tag.prefix + prefix, tag.language, [], options, signal);
  }

  /** `code` translated from `srcLanguage` into `dstLanguage` (names the server knows: python, cpp, ...). */
  async translate(code: string, srcLanguage: string, dstLanguage: string, options: Options,
                  signal?: AbortSignal): Promise<string> {
    if (options.api === "codegeex") {
      return this.codegeex("/multilingual_code_translate", {prompt: code, src_lang: srcLanguage, dst_lang: dstLanguage},
                           options, signal);
    }
    return this.task({task: "translate", code, src_lang: srcLanguage, dst_lang: dstLanguage}, options, signal);
  }

  /** `code` again, with a comment above each line explaining it. */
  async explain(code: string, languageId: string, options: Options, signal?: AbortSignal): Promise<string> {
    if (options.api === "codegeex") {
      return this.codegeex("/multilingual_code_explain", {prompt: code, lang: languageId}, options, signal);
    }
    return this.task({task: "explain", code, language: languageId}, options, signal);
  }

  private tagLine(languageId: string, signal?: AbortSignal) {
    let known = this.tagLines.get(languageId);
    if (!known) {
      known = (this.call("POST", "/v1/prompt", {task: "complete", code: "", language: languageId}, signal) as
        Promise<{prompt: string; language: string | null}>).then((r) => ({prefix: r.prompt, language: r.language}));
      this.tagLines.set(languageId, known);
      known.catch(() => this.tagLines.delete(languageId));     // ask again next time
    }
    return known;
  }

  private async task(body: object, options: Options, signal?: AbortSignal): Promise<string> {
    const built = await this.call("POST", "/v1/prompt", body, signal) as {prompt: string; language: string | null;
                                                                            stop: string[]; lead: string};
    // an explanation continues the open comment its prompt ends with: the server names it as the answer's lead,
    // as its /multilingual_code_explain puts it in front
    return built.lead + await this.openai(built.prompt, built.language, built.stop, options, signal);
  }

  private async openai(prompt: string, language: string | null, stop: string[], options: Options,
                       signal?: AbortSignal): Promise<string> {
    const body = {prompt, max_tokens: options.maxTokens, temperature: options.temperature, stop,
                  ...(language ? {language} : {})};
    const answer = await this.call("POST", "/v1/completions", body, signal) as {choices?: {text?: string}[]};
    const text = answer.choices?.[0]?.text;
    if (typeof text !== "string") throw new ServerError("server", `CodeGeeX: ${this.url} answered without a completion`);
    return text;
  }

  private async codegeex(path: string, fields: object, options: Options, signal?: AbortSignal): Promise<string> {
    const key = await this.apiKey();
    const body = {...fields, n: 1, temperature: Math.max(options.temperature, 0.01), top_p: 0.95, top_k: 0,
                  max_tokens: options.maxTokens, ...(key ? {apikey: key} : {})};
    const answer = await this.call("POST", path, body, signal) as {status?: number; message?: string;
                                                                      result?: {output?: {code?: string[]}}};
    const code = answer.result?.output?.code?.[0];
    if (answer.status !== 0 || typeof code !== "string") {
      throw new ServerError("refused", `CodeGeeX: the server refused the request: ${answer.message ?? "no result"}`);
    }
    return code;
  }

  /** One HTTP call with the API key and the timeout; failures become ServerErrors, the caller's abort stays an
   *  AbortError (the user typed on: not a problem to report). */
  private async call(method: string, path: string, body: object | undefined, signal?: AbortSignal): Promise<unknown> {
    const key = await this.apiKey();
    const timeout = AbortSignal.timeout(this.settings().timeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.fetchImpl(this.url + path, {
        method, signal: both,
        headers: {...(body ? {"Content-Type": "application/json"} : {}), ...(key ? {Authorization: `Bearer ${key}`} : {})},
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw this.failure(e, signal);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (e) {
      throw this.failure(e, signal);
    }
    let parsed: any = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON: reported below */
    }
    if (response.ok) {
      if (parsed === undefined) throw new ServerError("server", `CodeGeeX: ${this.url}${path} did not answer JSON`);
      return parsed;
    }
    const message = parsed?.error?.message ?? parsed?.message ?? (text.slice(0, 200) || response.statusText);
    const param = parsed?.error?.param ?? undefined;
    if (response.status === 401 || response.status === 403) {
      throw new ServerError("auth", `CodeGeeX: ${this.url} refused the API key (${message}); set it with ` +
                            `"CodeGeeX: Set API Key"`, response.status, param);
    }
    if (response.status >= 500) {
      throw new ServerError("server", `CodeGeeX: the server failed (HTTP ${response.status}): ${message}`,
                            response.status, param);
    }
    throw new ServerError("refused", `CodeGeeX: the server refused the request (HTTP ${response.status}): ${message}`,
                          response.status, param);
  }

  private failure(e: unknown, signal?: AbortSignal): Error {
    if (signal?.aborted) return signal.reason instanceof Error ? signal.reason : abortError();
    const name = (e as {name?: string})?.name;
    if (name === "TimeoutError" || name === "AbortError") {
      return new ServerError("timeout", `CodeGeeX: ${this.url} did not answer within ` +
                             `${Math.round(this.settings().timeoutMs / 1000)} s`);
    }
    return new ServerError("unreachable", `CodeGeeX: cannot reach the server at ${this.url} (is serve.py running?)`);
  }
}

function tooLong(e: ServerError): boolean {
  return e.status === 400 && (e.param === "prompt" || e.param === "max_tokens" ||
                              /the prompt is \d+ tokens|exceeds the model's context/.test(e.message));
}

export function abortError(): Error {
  const e = new Error("cancelled");
  e.name = "AbortError";
  return e;
}

export function isAbort(e: unknown): boolean {
  return (e as {name?: string})?.name === "AbortError";
}
