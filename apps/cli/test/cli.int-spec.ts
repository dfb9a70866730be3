import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { devCredentialsDir } from '@dops/security';
import { startServiceProcess, type ServiceProcess } from '@dops/testing';

const DOPS = path.resolve(__dirname, '../bin/dops');
// Devices are for operators: the development operator's token.
const OPS = ['--token-file', path.join(devCredentialsDir(), 'tokens', 'ops.token')];

function dops(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(DOPS, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('dops command line', () => {
  // A real device service process for the CLI to talk to, over a service that owns a worker
  // (postprocessing without Redis serves gRPC only).
  let owner: ServiceProcess;
  let device: ServiceProcess;

  beforeAll(async () => {
    owner = startServiceProcess('postprocessing');
    device = startServiceProcess('device', { DOPS_DEVICE_HOSTS: await owner.listening(120_000) });
    await device.listening();
  }, 180_000);

  afterAll(async () => {
    await device?.stop();
    await owner?.stop();
  });

  it('lists devices as JSON for scripts', async () => {
    const r = await dops(...OPS, '--device', device.address, '--json', 'devices');
    expect(r.code).toBe(0);
    const parsed = JSON.parse(r.stdout) as { devices: { id: string }[] };
    expect(parsed.devices.map((d) => d.id)).toEqual(['cpu:0']);
  }, 60_000);

  it('prints a table for people', async () => {
    const r = await dops(...OPS, '--device', device.address, 'devices');
    expect(r.stdout.split('\n')[0]).toMatch(/^ID\s+BACKEND\s+NAME/);
    expect(r.stdout).toMatch(/cpu:0\s+cpu/);
  }, 60_000);

  it('exits with PERMISSION_DENIED on stderr when a client (the default demo token) lists devices', async () => {
    const r = await dops('--device', device.address, 'devices');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error PERMISSION_DENIED/);
  }, 60_000);

  it('exits 2 on bad usage, naming what is missing', async () => {
    const r = await dops('submit');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--prompt/);
    const bad = await dops('submit', '--prompt', 'x', '--steps', 'many');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not an integer/);
  }, 60_000);

  it('exits 4 when the service is unreachable, with the error code on stderr', async () => {
    const r = await dops('--processing', '127.0.0.1:1', 'get', 'job-1');
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^error UNAVAILABLE/);
  }, 60_000);
});
