import { startTestRedis, type TestRedis } from '@dops/queue';
import { sampleValue } from '@dops/metrics';
import { sleep, startServiceProcess, type ServiceProcess } from '@dops/testing';

// What the services are started with: a short grace so the bound below is quick to check.
const GRACE_MS = 2_000;
const STOP_MS = 2_000;
// shutdownDeadlineMs: grace + worker stop + 5 s; the exit must come before it, with margin for a loaded machine.
const EXIT_BOUND_MS = GRACE_MS + STOP_MS + 5_000 + 3_000;

function env(redis: TestRedis): Record<string, string> {
  return {
    DOPS_REDIS_URL: redis.url,
    DOPS_QUEUE_PREFIX: `shutdown-${process.pid}`,
    DOPS_SHUTDOWN_GRACE_MS: String(GRACE_MS),
    DOPS_WORKER_STOP_TIMEOUT_MS: String(STOP_MS),
    DOPS_METRICS_HOST: '127.0.0.1',
    DOPS_METRICS_PORT: '0',
    DOPS_ADMIN_HOST: '127.0.0.1',
    DOPS_ADMIN_PORT: '0',
    DOPS_MODEL_SERVICE_ADDRESS: '',
    DOPS_PROCESSING_MODEL_SERVICE_ADDRESS: '',
  };
}

/** Every output line is one JSON object (no raw stack dump); returns them parsed. */
function jsonLines(proc: ServiceProcess): Record<string, unknown>[] {
  return proc
    .output()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON log line: ${line}\n--- whole output ---\n${proc.output()}`);
      }
    });
}

describe.each(['processing', 'inference', 'postprocessing'])('%s on SIGTERM', (app) => {
  let redis: TestRedis;
  let redisStopped = false;
  beforeEach(async () => {
    redis = await startTestRedis();
    redisStopped = false;
  });
  afterEach(async () => {
    if (!redisStopped) await redis.stop();
  });

  it('exits 0 in time with Redis up, after serving /metrics', async () => {
    const proc = startServiceProcess(app, env(redis));
    try {
      await proc.listening();
      const line = jsonLines(proc).find((l) => String(l['msg']).includes('service listening'))!;
      const scrape = await (await fetch(`http://127.0.0.1:${String(line['metricsPort'])}/metrics`)).text();
      expect(sampleValue(scrape, 'process_start_time_seconds', { service: app })).toBeGreaterThan(0);
      const started = Date.now();
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      const took = Date.now() - started;
      process.stdout.write(`[shutdown] ${app}, Redis up: exit 0 after ${took} ms\n`);
      expect(took).toBeLessThan(EXIT_BOUND_MS);
    } finally {
      await proc.stop();
    }
  }, 120_000);

  it('exits in time with Redis down, having logged the outage as single JSON lines', async () => {
    const proc = startServiceProcess(app, env(redis));
    try {
      await proc.listening();
      await redis.stop();
      redisStopped = true;
      // Long enough for many reconnect attempts of every connection.
      await sleep(4_000);
      const started = Date.now();
      proc.child.kill('SIGTERM');
      const code = await proc.exited;
      const took = Date.now() - started;
      expect({ code, within: took < EXIT_BOUND_MS }).toEqual({ code: 0, within: true });
      const lines = jsonLines(proc);
      const errors = lines.filter((l) => /connection error/.test(String(l['msg'])));
      process.stdout.write(
        `[shutdown] ${app}, Redis down: exit ${code} after ${took} ms; ${errors.length} error lines\n`,
      );
      expect(errors.length).toBeGreaterThan(0);
      // Throttled: one line per distinct connection and error, not one per reconnect attempt.
      expect(errors.length).toBeLessThan(30);
      for (const e of errors)
        expect(e['error']).toEqual({ message: expect.any(String), code: expect.stringMatching(/^E[A-Z]+$/) });
    } finally {
      await proc.stop();
    }
  }, 120_000);
});
