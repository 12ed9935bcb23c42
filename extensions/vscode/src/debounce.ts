// Waiting for the user to stop typing: each new wait supersedes the one before.

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const timer = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(true); }, ms);
    const onAbort = () => { clearTimeout(timer); resolve(false); };
    signal?.addEventListener("abort", onAbort, {once: true});
  });
}

export class Debouncer {
  private current: AbortController | null = null;

  constructor(private readonly ms: () => number) {}

  /** True once `ms` passed with no newer call and no abort of `signal`; false otherwise (the caller gives up). */
  async wait(signal?: AbortSignal): Promise<boolean> {
    this.current?.abort();
    const mine = new AbortController();
    this.current = mine;
    const onAbort = () => mine.abort();
    signal?.addEventListener("abort", onAbort, {once: true});
    if (signal?.aborted) mine.abort();
    const waited = await sleep(this.ms(), mine.signal);
    signal?.removeEventListener("abort", onAbort);
    if (this.current === mine) this.current = null;
    return waited && !mine.signal.aborted;
  }
}
