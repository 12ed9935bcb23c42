// The VS Code side: settings, the API key in SecretStorage, the status bar, the inline completion provider and
// the translate / explain commands. Everything that can run without VS Code lives in the other modules.
import * as vscode from "vscode";
import {Client, isAbort, ServerError} from "./client";
import {CompletionEngine, Status} from "./completion";
import {Notifier} from "./notify";
import {readSettings, Settings} from "./settings";

const SECRET = "codegeex.apiKey";

// targets offered by "CodeGeeX: Translate": the VS Code language id of the new editor, shown with its name
export const TRANSLATION_TARGETS: {label: string; languageId: string}[] = [
  {label: "Python", languageId: "python"}, {label: "C++", languageId: "cpp"}, {label: "Java", languageId: "java"},
  {label: "JavaScript", languageId: "javascript"}, {label: "TypeScript", languageId: "typescript"},
  {label: "Go", languageId: "go"}, {label: "Rust", languageId: "rust"}, {label: "C", languageId: "c"},
  {label: "C#", languageId: "csharp"}, {label: "Kotlin", languageId: "kotlin"}, {label: "PHP", languageId: "php"},
  {label: "Ruby", languageId: "ruby"}, {label: "Swift", languageId: "swift"}, {label: "Shell", languageId: "shellscript"},
];

const ICONS: Record<Status, [string, string]> = {
  ready: ["$(sparkle) CodeGeeX", "CodeGeeX: server reachable; click to turn inline suggestions off"],
  busy: ["$(sync~spin) CodeGeeX", "CodeGeeX: asking the server..."],
  problem: ["$(warning) CodeGeeX", "CodeGeeX: the last request failed; click to turn inline suggestions off"],
  off: ["$(circle-slash) CodeGeeX", "CodeGeeX: inline suggestions off; click to turn them on"],
};

function abortOn(token: vscode.CancellationToken): AbortSignal {
  const controller = new AbortController();
  if (token.isCancellationRequested) controller.abort();
  token.onCancellationRequested(() => controller.abort());
  return controller.signal;
}

export function activate(context: vscode.ExtensionContext) {
  let settings: Settings = load();
  function load(): Settings {
    const {settings, problems} = readSettings((key) => vscode.workspace.getConfiguration("codegeex").get(key));
    for (const problem of problems) void vscode.window.showWarningMessage(`CodeGeeX: ${problem}; using the default`);
    return settings;
  }

  const client = new Client(() => settings, async () => (await context.secrets.get(SECRET)) || undefined);
  const notifier = new Notifier((message) => void vscode.window.showErrorMessage(message));
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  status.command = "codegeex.toggle";
  const show = (state: Status) => {
    [status.text, status.tooltip] = ICONS[state];
  };
  const engine = new CompletionEngine(client, () => settings, notifier, show);
  show("ready");
  status.show();

  const provider: vscode.InlineCompletionItemProvider = {
    async provideInlineCompletionItems(document, position, completionContext, token) {
      const prefix = document.getText(new vscode.Range(new vscode.Position(0, 0), position));
      const lineSuffix = document.lineAt(position.line).text.slice(position.character);
      const manual = completionContext.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
      const text = await engine.provide({prefix, lineSuffix, languageId: document.languageId, manual}, abortOn(token));
      return text === null ? [] : [new vscode.InlineCompletionItem(text, new vscode.Range(position, position))];
    },
  };

  async function onSelection(action: "translate" | "explain") {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage("CodeGeeX: open a file and select code first");
      return;
    }
    const selection = editor.selection;
    const code = selection.isEmpty ? editor.document.getText() : editor.document.getText(selection);
    if (!code.trim()) {
      void vscode.window.showInformationMessage(`CodeGeeX: nothing to ${action}; select some code`);
      return;
    }
    const source = editor.document.languageId;
    let target = source;
    if (action === "translate") {
      const picked = await vscode.window.showQuickPick(TRANSLATION_TARGETS.filter((t) => t.languageId !== source),
                                                       {placeHolder: "Translate into"});
      if (!picked) return;
      target = picked.languageId;
    }
    const options = {api: settings.api, temperature: settings.temperature, maxTokens: settings.translateMaxTokens};
    try {
      const result = await vscode.window.withProgress(
        {location: vscode.ProgressLocation.Notification, title: `CodeGeeX: ${action === "translate" ?
          "translating" : "explaining"}...`, cancellable: true},
        (_progress, token) => action === "translate"
          ? client.translate(code, source, target, options, abortOn(token))
          : client.explain(code, source, options, abortOn(token)));
      notifier.ok();
      const document = await vscode.workspace.openTextDocument({content: result, language: target});
      await vscode.window.showTextDocument(document, {viewColumn: vscode.ViewColumn.Beside, preview: false});
    } catch (e) {
      if (isAbort(e)) return;
      notifier.report(e instanceof ServerError ? e : new ServerError("server", `CodeGeeX: ${String(e)}`));
    }
  }

  context.subscriptions.push(
    status,
    vscode.languages.registerInlineCompletionItemProvider({pattern: "**"}, provider),
    vscode.commands.registerCommand("codegeex.triggerCompletion",
                                    () => vscode.commands.executeCommand("editor.action.inlineSuggest.trigger")),
    vscode.commands.registerCommand("codegeex.translate", () => onSelection("translate")),
    vscode.commands.registerCommand("codegeex.explain", () => onSelection("explain")),
    vscode.commands.registerCommand("codegeex.toggle", () => {
      engine.enabled = !engine.enabled;
      show(engine.enabled ? "ready" : "off");
    }),
    vscode.commands.registerCommand("codegeex.setApiKey", async () => {
      const key = await vscode.window.showInputBox({password: true, ignoreFocusOut: true,
        prompt: "API key of the codegeex-ms server (serve.py --api-key); empty to remove it",
        placeHolder: "kept in VS Code's secret storage, never in settings"});
      if (key === undefined) return;
      if (key) await context.secrets.store(SECRET, key);
      else await context.secrets.delete(SECRET);
      notifier.ok();
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration("codegeex")) settings = load();
    }),
  );

  // say at once whether the server is there (the status bar only: no notification before the user asks for anything)
  client.health().then(() => show(engine.enabled ? "ready" : "off"), () => show("problem"));
  return {engine, client};
}

export function deactivate() {}
