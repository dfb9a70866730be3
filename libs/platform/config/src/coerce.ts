import type { z } from 'zod';

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/**
 * Turns an environment string into the leaf's type: numbers and booleans are parsed, everything
 * else stays a string. A string that does not parse is returned as is, so validation reports it.
 */
export function coerceEnvValue(leaf: z.ZodType, raw: string): unknown {
  const type = leaf._zod.def.type;
  const text = raw.trim();
  if (type === 'number' || type === 'bigint') {
    if (text === '') return raw;
    const n = Number(text);
    return Number.isNaN(n) ? raw : n;
  }
  if (type === 'boolean') {
    const lower = text.toLowerCase();
    if (TRUE.has(lower)) return true;
    if (FALSE.has(lower)) return false;
    return raw;
  }
  return raw;
}

/** What a leaf accepts, in words: `integer 0..65535`, `one of auto|cuda|cpu`, `boolean`. */
export function describeExpected(leaf: z.ZodType): string | undefined {
  const type = leaf._zod.def.type;
  if (type === 'number') {
    const n = leaf as z.ZodNumber;
    const kind = n.isInt ? 'integer' : 'number';
    const min =
      n.minValue !== null && Number.isFinite(n.minValue) && n.minValue > Number.MIN_SAFE_INTEGER
        ? n.minValue
        : undefined;
    const max =
      n.maxValue !== null && Number.isFinite(n.maxValue) && n.maxValue < Number.MAX_SAFE_INTEGER
        ? n.maxValue
        : undefined;
    if (min !== undefined && max !== undefined) return `${kind} ${min}..${max}`;
    if (min !== undefined) return `${kind} >= ${min}`;
    if (max !== undefined) return `${kind} <= ${max}`;
    return kind;
  }
  if (type === 'boolean') return 'boolean (true|false|1|0|yes|no|on|off)';
  if (type === 'enum') return `one of ${(leaf as z.ZodEnum).options.join('|')}`;
  return undefined;
}
