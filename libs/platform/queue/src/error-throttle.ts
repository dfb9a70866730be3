/** The part of a pino logger the throttle writes to. */
export interface WarnLogger {
  warn(fields: object, message?: string): void;
}

/** One line's worth of an error: its message and code, never its stack. */
export function errorFields(err: unknown): { message: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    // AggregateError (a failed dual-stack connect) says nothing in its own message.
    const message =
      err.message ||
      (err instanceof AggregateError
        ? err.errors.map((e) => String((e as Error).message)).join('; ')
        : err.name);
    return typeof code === 'string' ? { message, code } : { message };
  }
  return { message: String(err) };
}

/**
 * Logs connection errors (ioredis and BullMQ 'error' events, which repeat at every reconnect
 * attempt while Redis is down) as one structured JSON line each, the same error at most once per
 * `intervalMs` (default 30 s) with the count of those left out since. Throws nothing.
 */
export class ErrorThrottle {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: WarnLogger | undefined,
    private readonly message: string,
    private readonly intervalMs = 30_000,
  ) {}

  /** Reports `err` (with `fields`, e.g. the queue) unless the same error was logged within the interval. */
  report(err: unknown, fields: Record<string, unknown> = {}): void {
    const e = errorFields(err);
    const key = `${JSON.stringify(fields)}\u0000${e.code ?? e.message}`;
    const now = Date.now();
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.suppressed += 1;
      return;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger?.warn({ ...fields, error: e, suppressed: seen?.suppressed ?? 0 }, this.message);
  }
}
