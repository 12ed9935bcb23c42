// Just enough of the `vscode` module for extension.js, recording what the extension did with it.
"use strict";

function createMock(config = {}) {
  const calls = {errors: [], warnings: [], infos: [], opened: [], shown: [], commands: new Map(), providers: [],
                 executed: [], quickPick: null, inputBox: null, secrets: new Map(), status: null};
  class Position { constructor(line, character) { this.line = line; this.character = character; } }
  class Range { constructor(start, end) { this.start = start; this.end = end; } }
  class InlineCompletionItem { constructor(insertText, range) { this.insertText = insertText; this.range = range; } }
  const listeners = [];
  const vscode = {
    Position, Range, InlineCompletionItem,
    InlineCompletionTriggerKind: {Invoke: 0, Automatic: 1},
    StatusBarAlignment: {Left: 1, Right: 2}, ProgressLocation: {Notification: 15}, ViewColumn: {Beside: -2},
    window: {
      activeTextEditor: undefined,
      createStatusBarItem: () => (calls.status = {text: "", tooltip: "", command: "", visible: false,
                                                  show() { this.visible = true; }, dispose() {}}),
      showErrorMessage: async (m) => { calls.errors.push(m); },
      showWarningMessage: async (m) => { calls.warnings.push(m); },
      showInformationMessage: async (m) => { calls.infos.push(m); },
      showQuickPick: async (items) => calls.quickPick(items),
      showInputBox: async (options) => calls.inputBox(options),
      withProgress: async (_options, task) => task({report() {}}, {isCancellationRequested: false,
                                                                 onCancellationRequested() {}}),
      showTextDocument: async (document, options) => { calls.shown.push({document, options}); },
    },
    workspace: {
      getConfiguration: () => ({get: (key) => config[key]}),
      openTextDocument: async (options) => { calls.opened.push(options); return options; },
      onDidChangeConfiguration: (listener) => { listeners.push(listener); return {dispose() {}}; },
    },
    languages: {
      registerInlineCompletionItemProvider: (selector, provider) => {
        calls.providers.push({selector, provider});
        return {dispose() {}};
      },
    },
    commands: {
      registerCommand: (name, fn) => { calls.commands.set(name, fn); return {dispose() {}}; },
      executeCommand: async (name, ...args) => { calls.executed.push(name); },
    },
  };
  const secrets = {get: async (k) => calls.secrets.get(k), store: async (k, v) => { calls.secrets.set(k, v); },
                   delete: async (k) => { calls.secrets.delete(k); }};
  return {vscode, calls, context: {subscriptions: [], secrets}, changeConfig: (key, value) => {
    config[key] = value;
    for (const l of listeners) l({affectsConfiguration: (s) => s === "codegeex"});
  }};
}

// A document holding `text` with the cursor at its end.
function documentAt(vscode, text, languageId = "python") {
  const lines = text.split("\n");
  const position = new vscode.Position(lines.length - 1, lines.at(-1).length);
  return {
    position,
    document: {
      languageId,
      getText: (range) => (range ? text : text),
      lineAt: (line) => ({text: lines[line]}),
    },
  };
}

function token() {
  const handlers = [];
  return {isCancellationRequested: false, onCancellationRequested: (h) => handlers.push(h),
          cancel() { this.isCancellationRequested = true; handlers.forEach((h) => h()); }};
}

module.exports = {createMock, documentAt, token};
