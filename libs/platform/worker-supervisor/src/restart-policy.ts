/** When to restart a crashed worker: exponential backoff with jitter, a crash-loop limit in a
 * time window, and a stable-start window that forgives earlier crashes (as jupyter_client's
 * restarter and vscode-languageclient's DefaultErrorHandler do). */

export interface RestartPolicyOptions {
  initialDelayMs: number;
  maxDelayMs: number;
  multiplier: number;
  /** Fraction of the delay taken off at random, 0..1. */
  jitter: number;
  /** Crashes within the window that are still restarted. */
  limit: number;
  windowMs: number;
  /** Ready at least this long before a crash: earlier crashes are forgotten. */
  stableStartMs: number;
}

export type RestartDecision =
  | { restart: true; delayMs: number; crashesInWindow: number }
  | { restart: false; crashesInWindow: number };

export class RestartPolicy {
  private crashes: number[] = [];
  private consecutive = 0;

  constructor(
    private readonly options: RestartPolicyOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * Records one crash at `now`; `readyForMs` is how long the crashed worker had been ready
   * (0 if it never was). Returns the delay before the next start, or that the limit is reached.
   */
  recordCrash(now: number, readyForMs: number): RestartDecision {
    if (readyForMs >= this.options.stableStartMs) this.clear();
    this.crashes = this.crashes.filter((t) => now - t < this.options.windowMs);
    this.crashes.push(now);
    this.consecutive += 1;
    const crashesInWindow = this.crashes.length;
    if (crashesInWindow > this.options.limit) return { restart: false, crashesInWindow };
    return { restart: true, delayMs: this.delayFor(this.consecutive), crashesInWindow };
  }

  /** Forgets every crash (reset(), or a stable start). */
  clear(): void {
    this.crashes = [];
    this.consecutive = 0;
  }

  private delayFor(attempt: number): number {
    const { initialDelayMs, maxDelayMs, multiplier, jitter } = this.options;
    const base = Math.min(maxDelayMs, initialDelayMs * multiplier ** (attempt - 1));
    return Math.round(base * (1 - jitter * this.random()));
  }
}
