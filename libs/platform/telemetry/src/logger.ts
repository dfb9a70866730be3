import { context, trace } from '@opentelemetry/api';
import { truncateEcho } from './truncate';
import pino, { type DestinationStream, type Level, type Logger } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** `name` field of every line, e.g. `device`. */
  name: string;
  /** Default `info`; `silent` writes nothing. */
  level?: Level | 'silent';
  /** Where JSON lines go. Default stdout. Tests pass a stream to read them back. */
  destination?: DestinationStream;
}

/**
 * A pino logger writing one JSON object per line; every line logged inside an active span
 * carries `trace_id`, `span_id` and `trace_flags` so logs and traces join. Throws nothing.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      // ISO time and a string level keep the lines readable by people and by log pipelines alike.
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: boundFields },
      // The message too: a caller's 1 MiB id must not become a 1 MiB log line.
      hooks: {
        logMethod(args, method) {
          method.apply(
            this,
            args.map((a) => (typeof a === 'string' ? truncateEcho(a, LOG_FIELD_LIMIT) : a)) as typeof args,
          );
        },
      },
      mixin: traceFields,
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

// Longer than an error's echo limit: log lines carry paths and messages worth reading whole.
const LOG_FIELD_LIMIT = 2_000;

/** Log fields with every string (to two levels deep) bounded; errors and other objects as they are. */
function boundFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) out[key] = bound(value, 1);
  return out;
}

function bound(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return truncateEcho(value, LOG_FIELD_LIMIT);
  if (depth === 0 || value === null || typeof value !== 'object' || value instanceof Error) return value;
  if (Array.isArray(value)) return value.slice(0, 100).map((v) => bound(v, depth - 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, bound(v, depth - 1)]));
}

function traceFields(): Record<string, string> {
  const span = trace.getSpan(context.active());
  const sc = span?.spanContext();
  if (!sc || !trace.isSpanContextValid(sc)) return {};
  return {
    trace_id: sc.traceId,
    span_id: sc.spanId,
    trace_flags: `0${sc.traceFlags.toString(16)}`.slice(-2),
  };
}
