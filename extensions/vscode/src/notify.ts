// One readable notification per problem, not one per keystroke.
import {ServerError} from "./client";

export class Notifier {
  private shown: string | null = null;

  constructor(private readonly show: (message: string) => void) {}

  /** Shows `error` unless the same kind of problem is already shown and nothing has succeeded since. */
  report(error: ServerError): void {
    const key = error.kind === "refused" ? `${error.kind}:${error.message}` : error.kind;
    if (this.shown === key) return;
    this.shown = key;
    this.show(error.message);
  }

  /** A request succeeded: the next problem is news again. */
  ok(): void {
    this.shown = null;
  }
}
