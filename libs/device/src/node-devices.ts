import { DopsError } from '@dops/errors';
import { call, stream } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import type { DeviceSource } from '@dops/worker-pool';

/** One worker-owning service of this node, reached through its DeviceHostService. */
export interface DeviceHost {
  address: string;
  client: deviceV1.DeviceHostServiceClient;
}

export interface NodeDevicesOptions {
  /** Per host call; default 5 000 ms. */
  callTimeoutMs?: number;
  logger?: { warn(o: object, m?: string): void };
}

const CORDON_ORDER = [
  deviceV1.SchedulingState.SCHEDULABLE,
  deviceV1.SchedulingState.CORDONED,
  deviceV1.SchedulingState.DRAINING,
];

/**
 * The devices of this node as the services that own their workers see them: every host's
 * devices merged by id (each host's worker listed under `workers`, the first one's health on the
 * device, the device cordoned or draining while any host holds it so), and every control sent
 * to every host that has the device. The device service starts no worker of its own.
 */
export class NodeDevices implements DeviceSource {
  private readonly timeoutMs: number;

  constructor(
    private readonly hosts: readonly DeviceHost[],
    private readonly options: NodeDevicesOptions = {},
  ) {
    this.timeoutMs = options.callTimeoutMs ?? 5_000;
  }

  async list(): Promise<deviceV1.Device[]> {
    return merge(
      (await this.answers((h) => call(h.client.listDevices, {}, { deadlineMs: this.timeoutMs }))).flatMap(
        (r) => r.devices,
      ),
    );
  }

  async get(deviceId: string): Promise<deviceV1.Device> {
    const device = (await this.list()).find((d) => d.id === deviceId);
    if (!device)
      throw new DopsError('NOT_FOUND', `device_id: no device '${deviceId}' on this node`, {
        violations: [{ field: 'device_id', description: `no device '${deviceId}' on this node` }],
      });
    return device;
  }

  async cordon(deviceId: string): Promise<deviceV1.Device> {
    return this.onEvery(deviceId, (h) =>
      call(h.client.cordonDevice, { deviceId }, { deadlineMs: this.timeoutMs }),
    );
  }

  async uncordon(deviceId: string): Promise<deviceV1.Device> {
    return this.onEvery(deviceId, (h) =>
      call(h.client.uncordonDevice, { deviceId }, { deadlineMs: this.timeoutMs }),
    );
  }

  /** Drains the device in every host at once; drained when all are. */
  async drain(
    deviceId: string,
    options: { timeoutMs: number; signal: AbortSignal },
  ): Promise<{ device: deviceV1.Device; drained: boolean; running: string[] }> {
    const hosts = await this.hostsOf(deviceId);
    const answers = await Promise.all(
      hosts.map((h) =>
        call(
          h.client.drainDevice,
          { deviceId, timeoutMs: Math.max(1, options.timeoutMs) },
          { deadlineMs: options.timeoutMs + this.timeoutMs, signal: options.signal },
        ),
      ),
    );
    return {
      device: merge(answers.map((a) => a.device!))[0]!,
      drained: answers.every((a) => a.drained),
      running: answers.flatMap((a) => a.running),
    };
  }

  /**
   * Restarts the device's worker in every host. Unless forced, drains every host first: while
   * work still runs in any, nothing restarts (FAILED_PRECONDITION saying what); after the
   * restart the device is schedulable again if it was before.
   */
  async reset(
    deviceId: string,
    options: { force: boolean; drainTimeoutMs?: number },
  ): Promise<deviceV1.Device> {
    const hosts = await this.hostsOf(deviceId);
    const before = options.force ? undefined : await this.get(deviceId);
    const wasSchedulable = before?.scheduling === deviceV1.SchedulingState.SCHEDULABLE;
    if (!options.force) {
      const timeoutMs = options.drainTimeoutMs ?? 60_000;
      const drained = await this.drain(deviceId, { timeoutMs, signal: new AbortController().signal });
      if (!drained.drained) {
        if (wasSchedulable) await this.uncordon(deviceId);
        throw new DopsError(
          'FAILED_PRECONDITION',
          `device_id: work still runs on ${deviceId} (${drained.running.join('; ')}); reset with force to stop it`,
          {
            violations: [
              { field: 'device_id', description: `work still runs: ${drained.running.join('; ')}` },
            ],
          },
        );
      }
    }
    // Drained (or forced): each host restarts its worker at once.
    await Promise.all(
      hosts.map((h) =>
        call(h.client.resetDevice, { deviceId, force: true, drainTimeoutMs: 0 }, { deadlineMs: 120_000 }),
      ),
    );
    return wasSchedulable ? this.uncordon(deviceId) : this.get(deviceId);
  }

  /** Every host's changes, each forwarded as the merged device (re-read from every host). */
  async *changes(signal: AbortSignal): AsyncGenerator<deviceV1.WatchDevicesResponse> {
    const queue: { reason: string; deviceId: string }[] = [];
    let wake: (() => void) | undefined;
    const pumps = this.hosts.map(async (h) => {
      try {
        for await (const change of stream(h.client.watchDevices, {}, { signal })) {
          if (change.reason === 'initial' || !change.device) continue;
          queue.push({ reason: change.reason, deviceId: change.device.id });
          wake?.();
        }
      } catch (err) {
        if (!signal.aborted)
          this.options.logger?.warn({ host: h.address, err: String(err) }, 'device host watch ended');
      }
    });
    void Promise.all(pumps);
    while (!signal.aborted) {
      const next = queue.shift();
      if (!next) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
        wake = undefined;
        continue;
      }
      const device = await this.get(next.deviceId).catch(() => undefined);
      if (device) yield { device, reason: next.reason };
    }
  }

  /** The control on every host that has the device; the merged device after. */
  private async onEvery(
    deviceId: string,
    act: (host: DeviceHost) => Promise<{ device?: deviceV1.Device }>,
  ): Promise<deviceV1.Device> {
    const answers = await Promise.all((await this.hostsOf(deviceId)).map(act));
    return merge(answers.map((a) => a.device!))[0]!;
  }

  /** The hosts that have the device; NOT_FOUND when none does. */
  private async hostsOf(deviceId: string): Promise<DeviceHost[]> {
    const found: DeviceHost[] = [];
    await Promise.all(
      this.hosts.map(async (h) => {
        const r = await call(h.client.listDevices, {}, { deadlineMs: this.timeoutMs }).catch(() => undefined);
        if (r?.devices.some((d) => d.id === deviceId)) found.push(h);
      }),
    );
    if (found.length === 0)
      throw new DopsError('NOT_FOUND', `device_id: no device '${deviceId}' on this node`, {
        violations: [{ field: 'device_id', description: `no device '${deviceId}' on this node` }],
      });
    return this.hosts.filter((h) => found.includes(h));
  }

  /** Every host's answer; a host that does not answer is left out (logged); UNAVAILABLE when none answers. */
  private async answers<T>(ask: (host: DeviceHost) => Promise<T>): Promise<T[]> {
    const settled = await Promise.allSettled(this.hosts.map(ask));
    const ok: T[] = [];
    settled.forEach((s, i) => {
      if (s.status === 'fulfilled') ok.push(s.value);
      else
        this.options.logger?.warn(
          { host: this.hosts[i]!.address, err: String(s.reason) },
          'device host did not answer',
        );
    });
    if (ok.length === 0 && this.hosts.length > 0)
      throw DopsError.unavailable('no service that owns this node’s workers answered');
    return ok;
  }
}

/** Devices of several hosts merged by id, in the hosts' order. */
export function merge(devices: deviceV1.Device[]): deviceV1.Device[] {
  const byId = new Map<string, deviceV1.Device>();
  for (const d of devices) {
    const seen = byId.get(d.id);
    if (!seen) {
      byId.set(d.id, { ...d, workers: [...d.workers] });
      continue;
    }
    seen.workers.push(...d.workers);
    if (CORDON_ORDER.indexOf(d.scheduling) > CORDON_ORDER.indexOf(seen.scheduling))
      seen.scheduling = d.scheduling;
  }
  return [...byId.values()];
}
