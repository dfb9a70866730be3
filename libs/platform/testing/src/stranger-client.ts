import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { resolvePythonExecutable } from '@dops/worker-supervisor';

const SCRIPT = path.resolve(__dirname, '../../../../tools/grpc/stranger_client.py');

export interface StrangerResult {
  exitCode: number;
  /** Parsed JSON of stdout (exit 0) or stderr (exit 1: `{code, details}`). */
  json: unknown;
}

/**
 * Runs tools/grpc/stranger_client.py — plain Python grpcio with server reflection, no dops
 * code — against `address`, e.g. `stranger(addr, 'call', 'dops.device.v1.DeviceService/ListDevices', '{}')`.
 */
export function stranger(address: string, ...args: string[]): Promise<StrangerResult> {
  return new Promise((resolve, reject) => {
    execFile(
      resolvePythonExecutable(),
      [SCRIPT, address, ...args],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        const exitCode = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        const text = exitCode === 0 ? stdout : stderr;
        try {
          resolve({ exitCode, json: JSON.parse(text.trim().split('\n').pop() ?? '') });
        } catch {
          reject(new Error(`stranger client exited ${exitCode}: ${stderr || stdout}`));
        }
      },
    );
  });
}
