import type { ChannelCredentials } from '@grpc/grpc-js';
import { DopsError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { modelHostV1 } from '@dops/proto';
import type { HostLoadRequest, HostLoadResult, ModelHosts, Tier } from './load-types';
import { toProtoTier } from './model-proto';

/** Longer than the inference host's wait for a running generation (DOPS_INFERENCE_UNLOAD_WAIT_MS, 60 s). */
const UNLOAD_DEADLINE_MS = 120_000;

export interface HostAddresses {
  /** Host serving a device, by device id. */
  byDevice?: Record<string, string>;
  /** Host for every device not in byDevice (one worker-hosting service per node). */
  fallback?: string;
}

/**
 * Parses `cpu:0=127.0.0.1:50061,cuda:0=127.0.0.1:50062` (device ids contain colons, so `=`).
 * Throws INVALID_ARGUMENT naming `field` for an entry without `=`.
 */
export function parseHostAddresses(text: string, field = 'host_addresses'): Record<string, string> {
  const byDevice: Record<string, string> = {};
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const at = part.indexOf('=');
    if (at <= 0 || at === part.length - 1)
      throw DopsError.invalidArgument(field, `'${part}' is not <device id>=<host:port>`);
    byDevice[part.slice(0, at)] = part.slice(at + 1);
  }
  return byDevice;
}

/** ModelHosts over `dops.model.v1.ModelHostService`, one client per address (connected lazily). */
export class GrpcModelHosts implements ModelHosts {
  private readonly clients = new Map<string, modelHostV1.ModelHostServiceClient>();

  /**
   * `credentials`: this service's own mTLS identity (the hosts admit `internal` only).
   * `loadTimeoutMs` bounds one load (default 600 000: a cold SDXL read can take minutes on slow disks).
   */
  constructor(
    private readonly addresses: HostAddresses,
    private readonly credentials: ChannelCredentials,
    private readonly loadTimeoutMs = 600_000,
  ) {}

  async load(request: HostLoadRequest, signal?: AbortSignal): Promise<HostLoadResult> {
    const res = await call(
      this.client(request.deviceId).loadModel,
      {
        modelId: request.modelId,
        path: request.path,
        deviceId: request.deviceId,
        tier: toProtoTier(request.tier),
        configDir: request.configDir ?? '',
        sha256: request.sha256,
      },
      { deadlineMs: this.loadTimeoutMs, signal },
    );
    return {
      bytes: res.bytes,
      source: res.source,
      timings: res.timings ?? { readSeconds: 0, buildSeconds: 0, toDeviceSeconds: 0 },
    };
  }

  async unload(request: { modelId: string; deviceId: string; tier: Tier }): Promise<boolean> {
    // The host runs an unload between generations: it may wait (bounded there) for a running one.
    const res = await call(
      this.client(request.deviceId).unloadModel,
      { ...request, tier: toProtoTier(request.tier) },
      { deadlineMs: UNLOAD_DEADLINE_MS },
    );
    return res.unloaded;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  /** Throws NOT_FOUND for a device no host serves. */
  private client(deviceId: string): modelHostV1.ModelHostServiceClient {
    const address = this.addresses.byDevice?.[deviceId] ?? this.addresses.fallback;
    if (!address) throw DopsError.notFound('model host for device', deviceId);
    let client = this.clients.get(address);
    if (!client) {
      client = createClient(modelHostV1.ModelHostServiceClient, address, { credentials: this.credentials });
      this.clients.set(address, client);
    }
    return client;
  }
}
