// Inline completion without VS Code: debounce, cancel, ask the server, report problems once. extension.ts adapts
// it to VS Code's InlineCompletionItemProvider.
import {Client, isAbort, ServerError} from "./client";
import {Debouncer} from "./debounce";
import {Notifier} from "./notify";
import {trimPrefix, worthSuggesting} from "./prompt";
import {languageEnabled, Settings} from "./settings";

export type Status = "ready" | "busy" | "problem" | "off";

export interface CompletionRequest {
  prefix: string;       // the document up to the cursor
  lineSuffix: string;   // the rest of the cursor's line
  languageId: string;   // VS Code's language id of the document
  manual: boolean;      // asked for explicitly (no debounce, no mid-word check)
}

export class CompletionEngine {
  enabled = true;
  private readonly debouncer: Debouncer;
  private inFlight = 0;

  constructor(private readonly client: Client, private readonly settings: () => Settings,
              private readonly notifier: Notifier, private readonly onStatus: (status: Status) => void) {
    this.debouncer = new Debouncer(() => this.settings().debounceMs);
  }

  /** The suggestion for `request`, or null (off, not wanted here, superseded, cancelled, failed, or empty). */
  async provide(request: CompletionRequest, signal: AbortSignal): Promise<string | null> {
    const settings = this.settings();
    if (!this.enabled && !request.manual) return null;
    if (!languageEnabled(request.languageId, settings.enabledLanguages) && !request.manual) return null;
    if (!request.manual) {
      if (!worthSuggesting(request.prefix, request.lineSuffix)) return null;
      if (!(await this.debouncer.wait(signal))) return null;
    }
    this.inFlight += 1;
    this.onStatus("busy");
    try {
      const text = await this.client.complete(trimPrefix(request.prefix, settings.maxPromptChars), request.languageId,
                                              {api: settings.api, temperature: settings.temperature,
                                               maxTokens: settings.maxTokens}, signal);
      this.notifier.ok();
      this.settle("ready");
      return text.trim() ? text : null;
    } catch (e) {
      if (isAbort(e)) {
        this.settle("ready");
        return null;
      }
      const error = e instanceof ServerError ? e : new ServerError("server", `CodeGeeX: ${String(e)}`);
      this.notifier.report(error);
      this.settle("problem");
      return null;
    }
  }

  private settle(status: Status) {
    this.inFlight -= 1;
    this.onStatus(this.inFlight > 0 ? "busy" : this.enabled ? status : "off");
  }
}
