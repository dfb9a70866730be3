import { Writable } from 'node:stream';
import { context } from '@opentelemetry/api';
import {
  contextFromTraceparent,
  createLogger,
  currentTraceparent,
  startTelemetry,
  withSpan,
  type Telemetry,
} from './index';

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

function capture(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { lines, stream };
}

describe('telemetry', () => {
  let telemetry: Telemetry;
  beforeAll(() => {
    telemetry = startTelemetry({ serviceName: 'telemetry-test' });
  });
  afterAll(() => telemetry.shutdown());

  it('has no traceparent outside a span', () => {
    expect(currentTraceparent()).toBeUndefined();
  });

  it('gives the active span a W3C traceparent and stamps log lines with its ids', async () => {
    const { lines, stream } = capture();
    const logger = createLogger({ name: 'test', level: 'debug', destination: stream });
    const traceparent = await withSpan('work', (span) => {
      logger.info({ step: 1 }, 'inside');
      expect(currentTraceparent()).toBe(`00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
      return currentTraceparent();
    });
    logger.info('outside');
    expect(traceparent).toMatch(TRACEPARENT);
    const [inside, outside] = lines;
    expect(inside).toMatchObject({ name: 'test', level: 'info', msg: 'inside', step: 1 });
    expect(`00-${inside!['trace_id']}-${inside!['span_id']}-01`).toBe(traceparent);
    expect(outside!['trace_id']).toBeUndefined();
  });

  it('bounds long strings in fields and messages (a 1 MiB id is not a 1 MiB log line)', () => {
    const { lines, stream } = capture();
    const logger = createLogger({ name: 'test', destination: stream });
    const huge = 'j'.repeat(1024 * 1024);
    logger.info({ job_id: huge, nested: { path: huge } }, `job ${huge} failed`);
    const line = lines[0]!;
    expect(JSON.stringify(line).length).toBeLessThan(10_000);
    expect(String(line['job_id'])).toMatch(/…\(\+\d+ bytes\)$/);
    expect(String((line['nested'] as Record<string, string>)['path'])).toMatch(/…\(\+\d+ bytes\)$/);
  });

  it('continues a trace from a traceparent received over a wire', async () => {
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const child = await context.with(contextFromTraceparent(parent), () =>
      withSpan('child', () => currentTraceparent()),
    );
    expect(child).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-(?!b7ad6b7169203331)[0-9a-f]{16}-01$/);
  });

  it('records a thrown error and rethrows it', async () => {
    await expect(withSpan('fails', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });

  it('returns the first handle when started twice', () => {
    expect(startTelemetry({ serviceName: 'again' })).toBe(telemetry);
  });
});
