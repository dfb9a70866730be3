/**
 * The value of the series `name` whose labels include every one of `labels` (others ignored), in
 * a Prometheus text exposition; the sum when several match, undefined when none. For tests and
 * tools that read a scrape. Throws nothing.
 */
export function sampleValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (!match || match[1] !== name) continue;
    const have = new Map(
      [...(match[2] ?? '').matchAll(LABEL)].map((m) => [m[1] ?? '', (m[2] ?? '').replace(/\\(.)/g, '$1')]),
    );
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) total = (total ?? 0) + Number(match[3]);
  }
  return total;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
