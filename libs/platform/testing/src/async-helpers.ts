export interface WaitForOptions {
  /** Default 5 000 ms. */
  timeoutMs?: number;
  /** Default 10 ms. */
  intervalMs?: number;
  /** Names the condition in the timeout error. */
  description?: string;
}

/**
 * Polls `predicate` until it returns something truthy and resolves to that value; rejects with
 * the last error (or a timeout error) after `timeoutMs`.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const intervalMs = options.intervalMs ?? 10;
  const until = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= until) {
      const what = options.description ?? 'condition';
      throw new Error(
        `waitFor: ${what} not met within ${timeoutMs} ms`,
        lastError === undefined ? undefined : { cause: lastError },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The first `n` items of `source` (all of them when n is omitted); stops the iterator after the n-th. */
export async function collect<T>(source: AsyncIterable<T>, n = Infinity): Promise<T[]> {
  const items: T[] = [];
  if (n <= 0) return items;
  for await (const item of source) {
    items.push(item);
    if (items.length >= n) break;
  }
  return items;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
