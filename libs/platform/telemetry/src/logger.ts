import { context, trace } from '@opentelemetry/api';
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
      formatters: { level: (label) => ({ level: label }) },
      mixin: traceFields,
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
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
