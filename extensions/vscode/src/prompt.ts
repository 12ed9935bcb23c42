// What part of the document is sent: the end of the text before the cursor, starting at a line start.

/** The last `maxChars` characters of `prefix`, moved forward to the next line start so that the model never
 *  sees half a line (the server adds the language tag line in front). Short prefixes are returned whole. */
export function trimPrefix(prefix: string, maxChars: number): string {
  if (prefix.length <= maxChars) return prefix;
  const cut = prefix.length - maxChars;
  const lineStart = prefix.indexOf("\n", cut - 1);
  // a single line longer than the budget: keep its end rather than nothing
  return lineStart < 0 || lineStart + 1 >= prefix.length ? prefix.slice(cut) : prefix.slice(lineStart + 1);
}

/** Whether the cursor sits where a suggestion makes sense: not in the middle of a word (the text after the
 *  cursor on its line is empty or closing punctuation). */
export function worthSuggesting(prefix: string, lineSuffix: string): boolean {
  if (!prefix.trim()) return false;
  return /^[\s)\]}>;,'"`]*$/.test(lineSuffix);
}
