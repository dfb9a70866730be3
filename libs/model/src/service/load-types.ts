/** Where a loaded model lives in the worker process of a device. */
export type Tier = 'ram' | 'vram';

export interface LoadTimings {
  readSeconds: number;
  buildSeconds: number;
  toDeviceSeconds: number;
}

/** What a model host answers to a load. */
export interface HostLoadResult {
  bytes: number;
  timings: LoadTimings;
  /** 'disk', 'ram' (RAM-tier hit) or 'device' (already there). */
  source: string;
}

export interface HostLoadRequest {
  modelId: string;
  path: string;
  deviceId: string;
  tier: Tier;
  configDir?: string;
  /** The registry's sha256 of the file, stamped into the images made with it. */
  sha256?: string;
}

/** The worker-hosting services (inference, postprocessing) that hold models, reached by device. */
export interface ModelHosts {
  /** Rejects with the host's DopsError (NOT_FOUND device, OUT_OF_MEMORY, ...). */
  load(request: HostLoadRequest, signal?: AbortSignal): Promise<HostLoadResult>;
  /** False when the model was not held there. */
  unload(request: { modelId: string; deviceId: string; tier: Tier }): Promise<boolean>;
  close(): void;
}

export type { Reservations, ReserveAnswer } from '@dops/model-host';

export type LoadEventKind = 'loaded' | 'unloaded' | 'evicted' | 'failed';

export interface LoadEvent {
  kind: LoadEventKind;
  modelId: string;
  deviceId: string;
  tier: Tier;
  bytes: number;
  timings: LoadTimings & { totalSeconds: number };
  source: string;
  reason: string;
  at: number;
}

export interface DeviceResidency {
  deviceId: string;
  tier: Tier;
  bytes: number;
  loadedAt: number;
  lastUsedAt: number;
}

export interface ModelResidency {
  modelId: string;
  onDisk: boolean;
  devices: DeviceResidency[];
}
