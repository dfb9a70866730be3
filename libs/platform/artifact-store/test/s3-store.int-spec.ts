// The S3 backend against a real S3-compatible server: moto's (python-workers/requirements/dev.txt).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { waitFor } from '@dops/testing';
import { resolvePythonExecutable } from '@dops/worker-supervisor';
import { S3ArtifactStore } from '../src/index';
import { storeContract } from './store-contract';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

describe('S3ArtifactStore on an S3-compatible server (moto)', () => {
  let moto: ChildProcess;
  let endpoint: string;
  let store: S3ArtifactStore;

  beforeAll(async () => {
    const port = await freePort();
    endpoint = `http://127.0.0.1:${port}`;
    moto = spawn(resolvePythonExecutable(), ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
      stdio: 'ignore',
    });
    const admin = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
    await waitFor(
      () =>
        admin.send(new CreateBucketCommand({ Bucket: 'dops-artifacts' })).then(
          () => true,
          () => undefined,
        ),
      { timeoutMs: 30_000, intervalMs: 200, description: 'moto serving S3' },
    );
    admin.destroy();
    store = new S3ArtifactStore({ bucket: 'dops-artifacts', prefix: 'node-a/', endpoint, credentials });
  }, 60_000);

  afterAll(() => {
    store?.close();
    moto?.kill('SIGTERM');
  });

  storeContract(() => store);

  it('answers UNAVAILABLE when the server cannot be reached', async () => {
    const gone = new S3ArtifactStore({ bucket: 'b', endpoint: 'http://127.0.0.1:1', credentials });
    const err = await gone.put('x.bin', Buffer.from('x')).catch((e: { code?: string }) => e);
    expect((err as { code: string }).code).toBe('UNAVAILABLE');
    gone.close();
  });
});
