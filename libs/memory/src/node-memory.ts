import { DopsError } from '@dops/errors';
import { call } from '@dops/grpc-client';
import type { memoryV1 } from '@dops/proto';
import {
  DEFAULT_THRESHOLDS,
  fromProtoSnapshot,
  pressureOf,
  validateThresholds,
  watchSnapshots,
  type DeviceCleanup,
  type DeviceMemory,
  type MemoryCleanup,
  type MemorySnapshot,
  type MemorySource,
  type PressureThresholds,
  type WorkerMemory,
} from '@dops/worker-pool';
import { readSystemMemory, type SystemRam } from './system-memory';

/** One worker-owning service of the node (inference, postprocessing) and its MemoryHostService client. */
export interface MemoryHost {
  /** `host:port`, for logs and errors. */
  address: string;
  client: memoryV1.MemoryHostServiceClient;
}

/** Where a host that did not answer is reported. */
export interface NodeMemoryLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface NodeMemoryOptions {
  /** Default 85 % / 95 %. */
  thresholds?: PressureThresholds;
  /** Deadline of one host's GetMemory. Default 5 000 ms. */
  hostTimeoutMs?: number;
  /** Deadline of one host's CleanupMemory (garbage collection in every worker). Default 30 000 ms. */
  cleanupTimeoutMs?: number;
  /** Default: nothing is logged. */
  logger?: NodeMemoryLogger;
  /** System RAM; default readSystemMemory (the OS). */
  systemMemory?: () => SystemRam;
}

/**
 * The memory of this node: system RAM from the OS, device and per-worker memory from every
 * worker-owning service (MemoryHostService), merged by device id. A host that does not answer is
 * left out with a warning; only when no host answers does a call fail (UNAVAILABLE, retryable).
 * It starts no worker of its own.
 */
export class NodeMemory implements MemorySource {
  private readonly thresholds: PressureThresholds;
  private readonly hostTimeoutMs: number;
  private readonly cleanupTimeoutMs: number;
  private readonly systemMemory: () => SystemRam;

  /** Throws INVALID_ARGUMENT for no hosts or bad thresholds. */
  constructor(
    private readonly hosts: readonly MemoryHost[],
    private readonly options: NodeMemoryOptions = {},
  ) {
    if (hosts.length === 0) throw DopsError.invalidArgument('memory.hosts', 'needs at least one host:port');
    this.thresholds = validateThresholds(options.thresholds ?? DEFAULT_THRESHOLDS);
    this.hostTimeoutMs = options.hostTimeoutMs ?? 5_000;
    this.cleanupTimeoutMs = options.cleanupTimeoutMs ?? 30_000;
    this.systemMemory = options.systemMemory ?? readSystemMemory;
  }

  /**
   * One snapshot: every answering host's workers; a device's total/used/free from the first host
   * (in configured order) that reports it, its workers from all of them. Rejects UNAVAILABLE when
   * no host answers, CANCELLED / DEADLINE_EXCEEDED when `signal` aborts.
   */
  async snapshot(signal?: AbortSignal): Promise<MemorySnapshot> {
    const answers = await this.askEveryHost('GetMemory', signal, async (host) => {
      const res = await call(host.client.getMemory, {}, { deadlineMs: this.hostTimeoutMs, signal });
      return res.snapshot ? fromProtoSnapshot(res.snapshot) : undefined;
    });
    const devices = new Map<string, DeviceMemory>();
    const workers: WorkerMemory[] = [];
    for (const answer of answers) {
      if (!answer) continue;
      workers.push(...answer.workers);
      for (const d of answer.devices) {
        const known = devices.get(d.deviceId);
        if (known) known.workers.push(...d.workers);
        else
          devices.set(d.deviceId, {
            ...d,
            workers: [...d.workers],
            pressure: pressureOf(d.usedBytes, d.totalBytes, this.thresholds),
          });
      }
    }
    const ram = this.systemMemory();
    return {
      system: {
        totalBytes: ram.totalBytes,
        availableBytes: ram.availableBytes,
        workersRssBytes: workers.reduce((sum, w) => sum + w.rssBytes, 0),
        pressure: pressureOf(ram.totalBytes - ram.availableBytes, ram.totalBytes, this.thresholds),
      },
      devices: [...devices.values()],
      workers,
    };
  }

  /** Snapshots now and then every `intervalMs` until `signal` aborts; a failed snapshot ends the stream. */
  watch(intervalMs: number, signal: AbortSignal): AsyncIterable<MemorySnapshot> {
    return watchSnapshots((s) => this.snapshot(s), intervalMs, signal);
  }

  /**
   * Every host's workers (of `deviceId` only, when given) collect garbage and empty their caches;
   * the result has one entry per device, summed over the hosts' workers on it. With a device id,
   * the hosts that do not have it are skipped; NOT_FOUND when none has it. Rejects UNAVAILABLE
   * when no host that could have it answers.
   */
  async cleanup(deviceId?: string): Promise<MemoryCleanup> {
    let notFound = 0;
    const answers = await this.askEveryHost('CleanupMemory', undefined, async (host) => {
      try {
        return await call(
          host.client.cleanupMemory,
          { deviceId: deviceId ?? '' },
          { deadlineMs: this.cleanupTimeoutMs },
        );
      } catch (err) {
        // A host without the device answered: it is no failure, it has nothing to clean.
        if (deviceId && err instanceof DopsError && err.code === 'NOT_FOUND') {
          notFound += 1;
          return undefined;
        }
        throw err;
      }
    });
    if (deviceId && notFound === this.hosts.length) throw DopsError.notFound('device', deviceId);
    const byDevice = new Map<string, DeviceCleanup>();
    for (const answer of answers)
      for (const d of answer?.devices ?? []) {
        const known = byDevice.get(d.deviceId);
        if (!known) byDevice.set(d.deviceId, { ...d });
        else {
          known.freedBytes += d.freedBytes;
          known.rssBeforeBytes += d.rssBeforeBytes;
          known.rssAfterBytes += d.rssAfterBytes;
        }
      }
    const devices = [...byDevice.values()];
    if (deviceId && devices.length === 0 && answers.every((a) => a === undefined)) {
      // Some hosts lacked the device and the others did not answer: whether it exists is unknown.
      throw DopsError.unavailable(`no memory host that could have device ${deviceId} answered CleanupMemory`);
    }
    return { freedBytes: devices.reduce((sum, d) => sum + d.freedBytes, 0), devices };
  }

  /**
   * `ask` of every host at once; the answers of those that answered (in host order). A host that
   * fails is logged and left out; rejects UNAVAILABLE naming each host's error when none answers.
   */
  private async askEveryHost<T>(
    method: string,
    signal: AbortSignal | undefined,
    ask: (host: MemoryHost) => Promise<T>,
  ): Promise<T[]> {
    const settled = await Promise.allSettled(this.hosts.map(ask));
    if (signal?.aborted)
      throw signal.reason instanceof DopsError
        ? signal.reason
        : new DopsError('CANCELLED', `${method} cancelled`);
    const answers: T[] = [];
    const failures: string[] = [];
    this.hosts.forEach((host, i) => {
      const outcome = settled[i] as PromiseSettledResult<T>;
      if (outcome.status === 'fulfilled') {
        answers.push(outcome.value);
        return;
      }
      const reason = outcome.reason instanceof Error ? outcome.reason.message : String(outcome.reason);
      failures.push(`${host.address}: ${reason}`);
      this.options.logger?.warn(
        { host: host.address, code: (outcome.reason as Partial<DopsError>).code, err: reason },
        `memory host ${host.address} did not answer ${method}; its workers are left out`,
      );
    });
    if (answers.length === 0)
      throw DopsError.unavailable(`no memory host answered ${method}: ${failures.join('; ')}`);
    return answers;
  }
}

/** `127.0.0.1:50054, 127.0.0.1:50056` → the addresses, trimmed, empty entries dropped. Throws nothing. */
export function splitHostList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
