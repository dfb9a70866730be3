import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials as grpcCredentials } from '@grpc/grpc-js';
import { DopsError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import {
  anonymousCredentials,
  clientCredentials,
  devSecuritySettings,
  testCredentials,
  testServerSecurity,
} from '@dops/security';
import { createLogger } from '@dops/telemetry';
import { createGrpcServer, defineService, type CallContext, type GrpcServer } from '../src/index';
import { healthClient, unary } from './grpc-clients';

// Operators read and change devices; a client may only list them.
const seen: CallContext[] = [];
const service = defineService(
  deviceV1.DeviceServiceService,
  {
    listDevices: async (_req, ctx) => {
      seen.push(ctx);
      return { devices: [] };
    },
    getDevice: async (req) => ({ device: deviceV1.Device.fromPartial({ id: req.deviceId }) }),
    cordonDevice: async (req, ctx) => {
      seen.push(ctx);
      return { device: deviceV1.Device.fromPartial({ id: req.deviceId }) };
    },
    uncordonDevice: async () => ({}),
    drainDevice: async () => ({ drained: true, running: [] }),
    resetDevice: async () => ({}),
    watchDevices: async function* () {
      yield { reason: 'initial' };
    },
  },
  { default: ['operator'], methods: { listDevices: ['client', 'operator'] } },
);

const clients: deviceV1.DeviceServiceClient[] = [];
function clientWith(address: string, credentials: ReturnType<typeof testCredentials>) {
  const client = createClient(deviceV1.DeviceServiceClient, address, { credentials, deadlineMs: 5_000 });
  clients.push(client);
  return client;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return err instanceof DopsError ? err.code : `no error (${String(err)})`;
}

describe('authentication and authorisation on every server', () => {
  let server: GrpcServer;
  let address: string;
  let rogue: string;
  beforeAll(async () => {
    server = createGrpcServer({
      name: 'auth-test',
      logger: createLogger({ name: 'auth-test', level: 'silent' }),
      security: testServerSecurity('device'),
      services: [service],
      host: '127.0.0.1',
      port: 0,
    });
    address = `127.0.0.1:${await server.start()}`;
    // A CA of its own, and a certificate it issues that claims to be the operator `ops`.
    rogue = mkdtempSync(join(tmpdir(), 'dops-rogue-'));
    const sh = (...args: string[]) => execFileSync('openssl', args, { cwd: rogue, stdio: 'ignore' });
    sh('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
    sh('req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=rogue CA', '-days', '2', '-out', 'ca.crt');
    sh('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ops.key');
    sh('req', '-new', '-key', 'ops.key', '-subj', '/OU=operator/CN=ops', '-out', 'ops.csr');
    sh(
      'x509',
      '-req',
      '-in',
      'ops.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      'ops.crt',
    );
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await server.shutdown();
    rmSync(rogue, { recursive: true, force: true });
  });

  it('refuses a call with no credential: UNAUTHENTICATED, and the handler never runs', async () => {
    seen.length = 0;
    expect(await codeOf(call(clientWith(address, anonymousCredentials()).listDevices, {}))).toBe(
      'UNAUTHENTICATED',
    );
    expect(seen).toHaveLength(0);
  });

  it('refuses an unknown bearer token and a malformed authorization header', async () => {
    const ca = devSecuritySettings().caFile;
    const forged = clientCredentials({ caFile: ca, token: 'f'.repeat(64) });
    expect(await codeOf(call(clientWith(address, forged).listDevices, {}))).toBe('UNAUTHENTICATED');
    const client = clientWith(address, anonymousCredentials());
    const { Metadata } = await import('@grpc/grpc-js');
    const metadata = new Metadata();
    metadata.set('authorization', 'Basic b3BzOm9wcw==');
    expect(await codeOf(call(client.listDevices, {}, { metadata }))).toBe('UNAUTHENTICATED');
  });

  it('refuses a client certificate from another CA even when it names a real operator', async () => {
    const ca = devSecuritySettings().caFile;
    const forged = clientCredentials({
      caFile: ca,
      certFile: join(rogue, 'ops.crt'),
      keyFile: join(rogue, 'ops.key'),
    });
    expect(await codeOf(call(clientWith(address, forged).cordonDevice, { deviceId: 'cpu:0' }))).toBe(
      'UNAUTHENTICATED',
    );
  });

  it('refuses plaintext: there is no insecure port', async () => {
    const plain = clientWith(address, grpcCredentials.createInsecure());
    expect(await codeOf(call(plain.listDevices, {}, { deadlineMs: 2_000 }))).toMatch(
      /UNAVAILABLE|DEADLINE_EXCEEDED/,
    );
  });

  it('answers PERMISSION_DENIED for a known caller without the role, and never runs the handler', async () => {
    seen.length = 0;
    expect(
      await codeOf(call(clientWith(address, testCredentials('alice')).cordonDevice, { deviceId: 'x' })),
    ).toBe('PERMISSION_DENIED');
    expect(await codeOf(call(clientWith(address, testCredentials('nobody')).listDevices, {}))).toBe(
      'PERMISSION_DENIED',
    );
    expect(seen).toHaveLength(0);
  });

  it('admits by token and by client certificate, and the handler sees who called (never the request)', async () => {
    seen.length = 0;
    await call(clientWith(address, testCredentials('alice')).listDevices, {});
    await call(clientWith(address, testCredentials('ops', 'mtls')).cordonDevice, { deviceId: 'cpu:0' });
    await call(clientWith(address, testCredentials('inference', 'mtls')).listDevices, {}).catch(
      () => undefined,
    );
    expect(seen.slice(0, 2).map((c) => [c.principal.id, c.principal.via, [...c.principal.roles]])).toEqual([
      ['alice', 'token', ['client']],
      ['ops', 'mtls', ['operator', 'client']],
    ]);
  });

  it('keeps health checking callable without a credential', async () => {
    const health = healthClient(address);
    await expect(unary<{ status: string }>(health, 'check', { service: '' })).resolves.toMatchObject({
      status: 'SERVING',
    });
    health.close();
  });
});
