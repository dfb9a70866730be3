import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { resolvePythonExecutable } from '@dops/worker-supervisor';
import { devCredentialsDir } from '@dops/security';

const SCRIPT = path.resolve(__dirname, '../../../../tools/grpc/stranger_client.py');

export interface StrangerResult {
  exitCode: number;
  /** Parsed JSON of stdout (exit 0) or stderr (exit 1: `{code, details}`). */
  json: unknown;
}

/** Who the stranger is: a development client's token (default `ops`), its certificate, or nobody (TLS only). */
export type StrangerIdentity = { token: string } | { mtls: string } | 'anonymous';

/**
 * Runs tools/grpc/stranger_client.py — plain Python grpcio with server reflection, no dops
 * code — against `address`, e.g. `stranger(addr, 'call', 'dops.device.v1.DeviceService/ListDevices', '{}')`,
 * with the development client `ops`'s bearer token; `strangerAs` picks another identity.
 */
export function stranger(address: string, ...args: string[]): Promise<StrangerResult> {
  return strangerAs({ token: 'ops' }, address, ...args);
}

/** `stranger` as `identity`. */
export function strangerAs(
  identity: StrangerIdentity,
  address: string,
  ...args: string[]
): Promise<StrangerResult> {
  const dir = devCredentialsDir();
  const credentials = ['--ca', path.join(dir, 'ca.crt')];
  if (identity !== 'anonymous' && 'token' in identity)
    credentials.push('--token', path.join(dir, 'tokens', `${identity.token}.token`));
  else if (identity !== 'anonymous')
    credentials.push(
      '--cert',
      path.join(dir, `${identity.mtls}.crt`),
      '--key',
      path.join(dir, `${identity.mtls}.key`),
    );
  return new Promise((resolve, reject) => {
    execFile(
      resolvePythonExecutable(),
      [SCRIPT, ...credentials, address, ...args],
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
