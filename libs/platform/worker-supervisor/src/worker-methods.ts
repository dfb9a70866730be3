/** Result shapes of the supervisor's own methods (docs/worker-protocol.md, protocol version 1). */

export const PROTOCOL_VERSION = 1;

export type WorkerBackend = 'cuda' | 'rocm' | 'directml' | 'cpu';

export interface WorkerDevice {
  index: number;
  id: string;
  backend: WorkerBackend;
  name: string;
  vendor: string;
  totalMemoryBytes: number;
  cores?: number;
  logicalCores?: number;
  capabilities: {
    fp16: boolean;
    bf16: boolean;
    fp64: boolean;
    generatorDevice: 'cpu' | 'cuda';
    attention: string;
    torchDevice: string;
  };
}

/** Reply to `initialize`. */
export interface InitializeResult {
  protocolVersion: number;
  pid: number;
  python: string;
  torch: string;
  backend: WorkerBackend;
  devices: WorkerDevice[];
}

/** Reply to `worker.ping`. */
export interface PingResult {
  pid: number;
  uptimeMs: number;
  busy: boolean;
  activeRequests: number;
}
