import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ServiceError } from '@grpc/grpc-js';
import { fromGrpcError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { modelHostV1, modelV1 } from '@dops/proto';
import { startTestServer, testCredentials, type TestServer } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { resolvePythonExecutable, silentLogger } from '@dops/worker-supervisor';
import { ModelHost, modelHostService } from '../src/index';

const REPO_ROOT = resolve(__dirname, '../../../..');
const PYTHON_WORKERS = join(REPO_ROOT, 'python-workers');
const PYTHON = resolvePythonExecutable({ repoRoot: REPO_ROOT });
// model.* registers when dops_worker.models.methods is imported; importing it before run()
// keeps this test independent of whether the runtime's method list names it yet.
// How the worker refuses pickle (the loader's own check, or torch.load's weights_only unpickler).
const REFUSED = /^(FAILED_PRECONDITION|INVALID_ARGUMENT|UNSUPPORTED)$/;
const WORKER_MAIN = [
  'from dops_worker.runtime.stdio import guard_stdout',
  'frames_in, frames_out = guard_stdout()',
  'import dops_worker.models.methods',
  'from dops_worker.runtime.main import run',
  'run(frames_in, frames_out)',
].join('\n');

/**
 * A `.ckpt` whose unpickling writes `marker` (protocol 0: GLOBAL builtins.exec, REDUCE). torch.load
 * unpickles a non-zip file's first object straight away, so a load with weights_only=False runs it.
 */
function evilCheckpoint(marker: string): Buffer {
  const code = `open(${JSON.stringify(marker)}, 'w').write('pickle ran')`;
  return Buffer.from(`cbuiltins\nexec\n(V${code}\ntR.`, 'latin1');
}

describe('LoadModel never unpickles a .ckpt: real server, real Python worker (cpu)', () => {
  let dir: string;
  let models: string;
  let marker: string;
  let pool: WorkerPool;
  let server: TestServer;
  let client: modelHostV1.ModelHostServiceClient;
  const deviceId = () => pool.list()[0]!.device.id;
  const request = (path: string): modelHostV1.ModelHostServiceLoadModelRequest => ({
    modelId: 'evil',
    path,
    deviceId: deviceId(),
    tier: modelV1.Tier.RAM,
    configDir: '',
  });

  beforeAll(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'dops-pickle-')));
    models = join(dir, 'models');
    marker = join(dir, 'marker');
    await mkdir(models);
    await mkdir(join(dir, 'outside'));
    await writeFile(join(models, 'evil.ckpt'), evilCheckpoint(marker));
    await writeFile(join(dir, 'outside', 'evil.ckpt'), evilCheckpoint(marker));
    await symlink(join(dir, 'outside', 'evil.ckpt'), join(models, 'linked.ckpt'));
    // The node does not allow pickle: neither this process's environment nor a request can say otherwise.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DOPS_BACKEND: 'cpu',
      HF_HUB_OFFLINE: '1',
      PYTHONPATH: join(PYTHON_WORKERS, 'src'),
      DOPS_MODEL_ROOTS: models,
    };
    delete env['DOPS_ALLOW_UNSAFE_PICKLE'];
    pool = new WorkerPool({
      name: 'pickle-test',
      backend: 'cpu',
      logger: silentLogger,
      supervisor: {
        command: PYTHON,
        args: ['-c', WORKER_MAIN],
        cwd: PYTHON_WORKERS,
        env,
        handshakeTimeoutMs: 30_000,
        requestTimeoutMs: 30_000,
        shutdownTimeoutMs: 2_000,
        stdinCloseTimeoutMs: 1_000,
        sigtermTimeoutMs: 1_000,
        drainTimeoutMs: 1_000,
      },
    });
    await pool.start();
    server = await startTestServer([modelHostService(new ModelHost(pool), { modelRoots: [models] })]);
    client = createClient(modelHostV1.ModelHostServiceClient, server.address, {
      credentials: testCredentials('model', 'mtls'),
    });
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await pool?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the payload is live: plain pickle.load of the file writes its marker', async () => {
    const control = join(dir, 'control-marker');
    const file = join(dir, 'control.ckpt');
    await writeFile(file, evilCheckpoint(control));
    execFileSync(PYTHON, ['-c', 'import pickle, sys; pickle.load(open(sys.argv[1], "rb"))', file]);
    expect(existsSync(control)).toBe(true);
  });

  it('refuses a .ckpt inside the model roots without running it', async () => {
    await expect(call(client.loadModel, request(join(models, 'evil.ckpt')))).rejects.toMatchObject({
      code: expect.stringMatching(REFUSED),
    });
    expect(existsSync(marker)).toBe(false);
  });

  it('ignores allow_unsafe_pickle = true from a client built before field 6 was reserved', async () => {
    const method = '/dops.model.v1.ModelHostService/LoadModel';
    // Field 6, varint, true: what the old generated code put on the wire.
    const withOldField = (req: modelHostV1.ModelHostServiceLoadModelRequest) =>
      Buffer.concat([
        Buffer.from(modelHostV1.ModelHostServiceLoadModelRequest.encode(req).finish()),
        Buffer.from([0x30, 0x01]),
      ]);
    const error = await new Promise<ServiceError | undefined>((done) =>
      client.makeUnaryRequest(
        method,
        withOldField,
        (bytes: Buffer) => modelHostV1.ModelHostServiceLoadModelResponse.decode(bytes),
        request(join(models, 'evil.ckpt')),
        (err) => done(err ?? undefined),
      ),
    );
    // Refused by the worker (not a transport failure): the request arrived, field 6 and all.
    expect(fromGrpcError(error!).code).toMatch(REFUSED);
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a .ckpt outside the roots, or linked into them, before the worker sees it', async () => {
    for (const path of [join(dir, 'outside', 'evil.ckpt'), join(models, 'linked.ckpt')]) {
      await expect(call(client.loadModel, request(path))).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        violations: [expect.objectContaining({ field: 'path' })],
      });
    }
    expect(existsSync(marker)).toBe(false);
  });
});
