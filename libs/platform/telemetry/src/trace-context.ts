import {
  context,
  propagation,
  trace,
  SpanStatusCode,
  type Context,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';

const TRACER = 'dops';

/**
 * The W3C `traceparent` of the active span (`00-<trace>-<span>-<flags>`), or undefined when no
 * valid span is active. Built by hand so it works whatever propagator is installed.
 */
export function currentTraceparent(ctx: Context = context.active()): string | undefined {
  const sc = trace.getSpan(ctx)?.spanContext();
  if (!sc || !trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${`0${sc.traceFlags.toString(16)}`.slice(-2)}`;
}

/**
 * A context whose remote parent is `traceparent` (from a worker message or a queue job), for
 * `context.with(...)`; the active context unchanged when it is missing or malformed.
 */
export function contextFromTraceparent(
  traceparent: string | undefined,
  base: Context = context.active(),
): Context {
  if (!traceparent) return base;
  return propagation.extract(base, { traceparent });
}

/**
 * Runs `fn` inside a new active span named `name`; the span ends when `fn` settles, records a
 * thrown error (and rethrows it). Without a started SDK the span is a no-op.
 */
export async function withSpan<T>(
  name: string,
  fn: (span: Span) => Promise<T> | T,
  options: SpanOptions = {},
): Promise<T> {
  return trace.getTracer(TRACER).startActiveSpan(name, options, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err instanceof Error ? err : String(err));
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: err instanceof Error ? err.message : String(err),
      });
      throw err;
    } finally {
      span.end();
    }
  });
}
