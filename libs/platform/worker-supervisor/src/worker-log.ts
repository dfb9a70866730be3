import type { SupervisorLogger } from './logger';

export type WorkerLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One stderr line of a worker, parsed. */
export interface WorkerLogRecord {
  pid: number | undefined;
  level: WorkerLogLevel;
  msg: string;
  /** Python logger name (`dops_worker.x`), when the line was JSON. */
  logger?: string;
  /** The worker's own timestamp (ISO 8601), when the line was JSON. */
  ts?: string;
  /** Every other key of a JSON line. */
  fields: Record<string, unknown>;
  /** False for raw text (native libraries writing to stderr). */
  structured: boolean;
}

const LEVELS: Record<string, WorkerLogLevel> = {
  debug: 'debug',
  trace: 'debug',
  info: 'info',
  warning: 'warn',
  warn: 'warn',
  error: 'error',
  critical: 'error',
  fatal: 'error',
};

/**
 * Parses one stderr line: a JSON object `{ts, level, logger, msg, ...extra}` keeps its level
 * (Python's `warning`/`critical` map to `warn`/`error`; unknown levels to info); anything else is
 * info text. Never throws.
 */
export function parseWorkerLogLine(line: string, pid: number | undefined): WorkerLogRecord {
  const trimmed = line.trim();
  if (trimmed.startsWith('{')) {
    try {
      const value: unknown = JSON.parse(trimmed);
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        const { ts, level, logger, msg, ...fields } = value as Record<string, unknown>;
        return {
          pid,
          level: LEVELS[String(level).toLowerCase()] ?? 'info',
          msg: typeof msg === 'string' ? msg : JSON.stringify(msg ?? ''),
          logger: typeof logger === 'string' ? logger : undefined,
          ts: typeof ts === 'string' ? ts : undefined,
          fields,
          structured: true,
        };
      }
    } catch {
      // not JSON after all: falls through to raw text
    }
  }
  return { pid, level: 'info', msg: line, fields: {}, structured: false };
}

/** Writes a worker's log record through the service logger at its level. */
export function emitWorkerLog(logger: SupervisorLogger, record: WorkerLogRecord): void {
  const fields: Record<string, unknown> = { ...record.fields, workerPid: record.pid };
  if (record.logger !== undefined) fields['workerLogger'] = record.logger;
  if (record.ts !== undefined) fields['workerTs'] = record.ts;
  if (!record.structured) fields['raw'] = true;
  logger[record.level](fields, record.msg);
}
