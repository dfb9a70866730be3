import { emitWorkerLog, parseWorkerLogLine } from './worker-log';
import type { SupervisorLogger } from './logger';

describe('worker log lines', () => {
  it('keeps the level of a JSON line and maps Python names', () => {
    const r = parseWorkerLogLine(
      '{"ts":"2025-01-01T00:00:00Z","level":"warning","logger":"dops_worker.x","msg":"hot","vramBytes":5}',
      42,
    );
    expect(r).toEqual({
      pid: 42,
      level: 'warn',
      msg: 'hot',
      logger: 'dops_worker.x',
      ts: '2025-01-01T00:00:00Z',
      fields: { vramBytes: 5 },
      structured: true,
    });
    expect(parseWorkerLogLine('{"level":"critical","msg":"x"}', 1).level).toBe('error');
  });

  it('turns raw text into info', () => {
    expect(parseWorkerLogLine('W0101 cuda warning {', 7)).toEqual({
      pid: 7,
      level: 'info',
      msg: 'W0101 cuda warning {',
      fields: {},
      structured: false,
    });
  });

  it('re-emits through the logger at its level with the worker pid', () => {
    const calls: Array<[string, object, string | undefined]> = [];
    const logger = {} as SupervisorLogger;
    for (const level of ['debug', 'info', 'warn', 'error'] as const)
      logger[level] = (fields, msg) => calls.push([level, fields, msg]);
    emitWorkerLog(logger, parseWorkerLogLine('{"level":"error","logger":"a","msg":"boom"}', 9));
    expect(calls).toEqual([['error', { workerPid: 9, workerLogger: 'a' }, 'boom']]);
  });
});
