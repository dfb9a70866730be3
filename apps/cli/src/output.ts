/** Where a command writes: JSON lines for scripts (`--json`), aligned text for people. */
export interface Output {
  json: boolean;
  /** A result object: one JSON line, or `text()` of it. */
  result(value: unknown, text: () => string): void;
  /** A progress note on stderr (never in --json stdout). */
  note(message: string): void;
}

export function createOutput(json: boolean): Output {
  return {
    json,
    result(value, text) {
      process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${text()}\n`);
    },
    note(message) {
      process.stderr.write(`${message}\n`);
    },
  };
}

/** Left-aligned columns; the header row first. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** An enum value without its prefix, lower-cased: JOB_STATE_RUNNING → running. */
export function short(value: string, prefix: string): string {
  return value.startsWith(prefix) ? value.slice(prefix.length).toLowerCase() : value.toLowerCase();
}
