// The extension's settings (contributes.configuration in package.json), read and checked in one place.

export type Api = "openai" | "codegeex";

export interface Settings {
  serverUrl: string;          // base URL of serve.py, without a trailing slash
  api: Api;                   // openai: /v1/completions (streams, honours max tokens); codegeex: the CodeGeeX endpoints
  temperature: number;        // 0 = greedy
  maxTokens: number;          // new tokens per inline suggestion
  translateMaxTokens: number; // new tokens for translation and explanation
  enabledLanguages: string[]; // VS Code language ids, or "*" for all
  debounceMs: number;         // quiet time after the last keystroke before asking the server
  maxPromptChars: number;     // the document prefix sent, cut at a line start
  timeoutMs: number;          // a request slower than this is abandoned
}

export const DEFAULTS: Settings = {
  serverUrl: "http://127.0.0.1:8000", api: "openai", temperature: 0.2, maxTokens: 64, translateMaxTokens: 256,
  enabledLanguages: ["*"], debounceMs: 250, maxPromptChars: 3000, timeoutMs: 30000,
};

/** Settings from a getter (VS Code's WorkspaceConfiguration.get), each checked; a bad value falls back to its
 *  default and is named in `problems`. */
export function readSettings(get: <T>(key: string) => T | undefined): {settings: Settings; problems: string[]} {
  const problems: string[] = [];
  const settings: Settings = {...DEFAULTS};
  const url = get<string>("serverUrl");
  if (url !== undefined) {
    try {
      const parsed = new URL(url);
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http(s)");
      settings.serverUrl = url.replace(/\/+$/, "");
    } catch {
      problems.push(`codegeex.serverUrl ${JSON.stringify(url)} is not an http(s) URL`);
    }
  }
  const api = get<string>("api");
  if (api !== undefined) {
    if (api === "openai" || api === "codegeex") settings.api = api;
    else problems.push(`codegeex.api ${JSON.stringify(api)} must be "openai" or "codegeex"`);
  }
  const numbers: [keyof Settings, number, number][] = [
    ["temperature", 0, 5], ["maxTokens", 1, 4096], ["translateMaxTokens", 1, 4096], ["debounceMs", 0, 10000],
    ["maxPromptChars", 100, 1000000], ["timeoutMs", 1000, 600000]];
  for (const [key, low, high] of numbers) {
    const value = get<number>(key);
    if (value === undefined) continue;
    if (typeof value === "number" && Number.isFinite(value) && value >= low && value <= high) {
      (settings[key] as number) = value;
    } else {
      problems.push(`codegeex.${key} ${JSON.stringify(value)} must be a number in ${low}..${high}`);
    }
  }
  const languages = get<string[]>("enabledLanguages");
  if (languages !== undefined) {
    if (Array.isArray(languages) && languages.every((l) => typeof l === "string")) settings.enabledLanguages = languages;
    else problems.push("codegeex.enabledLanguages must be a list of language ids");
  }
  return {settings, problems};
}

export function languageEnabled(languageId: string, enabled: string[]): boolean {
  return enabled.includes("*") || enabled.includes(languageId);
}
