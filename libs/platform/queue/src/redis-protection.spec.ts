import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { defineConfig } from '@dops/config';
import { z } from 'zod';
import {
  REDIS_ACL_RULES,
  connectionOptions,
  createRedis,
  queueConfig,
  redactRedisUrl,
  redisOptions,
  redisUrlOf,
  startTestRedis,
  type TestRedis,
} from './index';

const repoRoot = resolve(__dirname, '../../../..');

/** The error of one PING through a connection that does not retry. */
async function pingError(url: string, extra: Record<string, unknown> = {}): Promise<Error | undefined> {
  // disconnectTimeout: ioredis's disconnect() of a refused stream waits that long for a 'close' that already came.
  const r = createRedis(url, {
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    disconnectTimeout: 50,
    ...extra,
  });
  try {
    await r.ping();
    return undefined;
  } catch (err) {
    return err as Error;
  } finally {
    r.disconnect();
  }
}

/** Every file and folder under `dir`, with its mode. */
function walk(dir: string): Array<{ path: string; mode: number }> {
  const out = [{ path: dir, mode: statSync(dir).mode }];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(path));
    else out.push({ path, mode: statSync(path).mode });
  }
  return out;
}

describe('the test Redis is protected as the deployments are', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis({ aof: true });
  });
  afterAll(() => redis.stop());

  it('refuses connections without the password, with a wrong one and as the default user', async () => {
    const port = redis.port;
    expect((await pingError(`redis://127.0.0.1:${port}`))?.message).toMatch(/NOAUTH/);
    expect((await pingError(`redis://dops:wrong@127.0.0.1:${port}`))?.message).toMatch(/WRONGPASS/);
    expect((await pingError(`redis://default:${redis.password}@127.0.0.1:${port}`))?.message).toMatch(
      /WRONGPASS/,
    );
    expect((await pingError(`redis://:${redis.password}@127.0.0.1:${port}`))?.message).toMatch(/WRONGPASS/);
    expect(await pingError(redis.url)).toBeUndefined();
  });

  it('lets the dops user run BullMQ but nothing administrative', async () => {
    const queue = new Queue('inference', { connection: connectionOptions(redis.url), prefix: 'prot' });
    await queue.add('j', { a: 1 });
    expect(await queue.getJobCounts('wait')).toEqual({ wait: 1 });
    await queue.getWorkers(); // CLIENT LIST
    await queue.obliterate({ force: true });
    await queue.close();
    const r = createRedis(redis.url);
    try {
      for (const cmd of [
        ['config', 'get', 'dir'],
        ['flushall'],
        ['keys', '*'],
        ['shutdown'],
        ['acl', 'list'],
      ]) {
        await expect(r.call(cmd[0]!, ...cmd.slice(1))).rejects.toThrow(/NOPERM/);
      }
    } finally {
      r.disconnect();
    }
  });

  it('listens on loopback only', async () => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    if (!external) return; // no other interface to try
    const refused = await new Promise<boolean>((done) => {
      const socket = connect({ host: external, port: redis.port });
      socket.once('connect', () => {
        socket.destroy();
        done(false);
      });
      socket.once('error', () => done(true));
    });
    expect(refused).toBe(true);
  });

  it('keeps its AOF, ACL file and folders owner-only', async () => {
    const r = createRedis(redis.url);
    await r.set('prot:prompt', 'a lighthouse on a cliff at dawn');
    r.disconnect();
    const entries = walk(redis.dir);
    expect(entries.some((e) => /\.aof$/.test(e.path))).toBe(true);
    expect(entries.some((e) => e.path.endsWith('users.acl'))).toBe(true);
    for (const e of entries)
      expect({ path: e.path, groupOrWorld: (e.mode & 0o077).toString(8) }).toEqual({
        path: e.path,
        groupOrWorld: '0',
      });
  });

  it('keeps BullMQ jobs and transactions across a restart (the AOF replays as the locked default user)', async () => {
    const queue = new Queue('inference', { connection: connectionOptions(redis.url), prefix: 'prot-aof' });
    await queue.add('j', { a: 1 }, { priority: 2 });
    const r = createRedis(redis.url);
    await r.multi().set('prot-aof:tx', '1').incr('prot-aof:n').exec();
    await redis.restart();
    expect(await r.get('prot-aof:tx')).toBe('1');
    expect(await queue.getJobCounts('prioritized')).toEqual({ prioritized: 1 });
    r.disconnect();
    await queue.obliterate({ force: true });
    await queue.close();
  });

  it('takes the password from a file (a mounted secret) instead of the URL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dops-secret-'));
    try {
      const file = join(dir, 'password');
      writeFileSync(file, `${redis.password}\n`, { mode: 0o600 });
      const url = redisUrlOf({
        redisUrl: `redis://dops:stale@127.0.0.1:${redis.port}`,
        redisPasswordFile: file,
      });
      expect(url).not.toContain('stale');
      expect(url).not.toContain(redis.password);
      expect(await pingError(url)).toBeUndefined();
      const queue = new Queue('inference', { connection: connectionOptions(url), prefix: 'prot-file' });
      await queue.add('j', {});
      expect(await queue.count()).toBe(1);
      await queue.obliterate({ force: true });
      await queue.close();
      expect(() => redisOptions(`redis://dops@127.0.0.1:1?password_file=${join(dir, 'missing')}`)).toThrow(
        /password_file: cannot read/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('queue config: credentials and TLS', () => {
  const config = defineConfig(z.object({ queue: queueConfig }), { name: 'test' });

  it('names its settings by the env rule', () => {
    const envs = config.leaves.map((l) => l.envVar);
    expect(envs).toEqual(
      expect.arrayContaining([
        'DOPS_REDIS_URL',
        'DOPS_QUEUE_REDIS_PASSWORD_FILE',
        'DOPS_QUEUE_TLS_CA_FILE',
        'DOPS_QUEUE_TLS_CERT_FILE',
        'DOPS_QUEUE_TLS_KEY_FILE',
      ]),
    );
  });

  it('folds the files into the URL the connections get', () => {
    const { queue } = config.load({
      env: {
        DOPS_REDIS_URL: 'rediss://dops@redis.dops.svc:6379',
        DOPS_QUEUE_REDIS_PASSWORD_FILE: '/run/secrets/redis/password',
        DOPS_QUEUE_TLS_CA_FILE: '/run/secrets/redis-tls/ca.crt',
      },
    });
    const url = new URL(redisUrlOf(queue));
    expect(url.protocol).toBe('rediss:');
    expect(url.username).toBe('dops');
    expect(url.searchParams.get('password_file')).toBe('/run/secrets/redis/password');
    expect(url.searchParams.get('tls_ca_file')).toBe('/run/secrets/redis-tls/ca.crt');
    expect(redisUrlOf({ redisUrl: 'redis://dops:pw@h:1' })).toBe('redis://dops:pw@h:1');
    expect(redactRedisUrl('redis://dops:s3cret@h:1')).toBe('redis://dops:***@h:1');
  });

  it('refuses TLS files on a redis:// URL and a certificate without its key', () => {
    expect(() =>
      config.load({ env: { DOPS_REDIS_URL: 'redis://h:1', DOPS_QUEUE_TLS_CA_FILE: '/ca.pem' } }),
    ).toThrow(/rediss/);
    expect(() =>
      config.load({ env: { DOPS_REDIS_URL: 'rediss://h:1', DOPS_QUEUE_TLS_CERT_FILE: '/c.pem' } }),
    ).toThrow(/DOPS_QUEUE_TLS_KEY_FILE/);
    expect(() => redisOptions('redis://h:1?tls_ca_file=/ca.pem')).toThrow(/rediss/);
    expect(() => redisOptions('redis://h:1?family=6')).toThrow(/unknown parameter family/);
  });
});

const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

(haveOpenssl ? describe : describe.skip)('rediss:// with a private CA and client certificates', () => {
  let dir: string;
  let redis: TestRedis;
  const f = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dops-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    ssl(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '1',
      '-subj',
      '/CN=dops-test-ca',
    );
    writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\n');
    for (const name of ['server', 'client']) {
      ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      const ext = name === 'server' ? ['-extfile', 'server.ext'] : [];
      const ca = ['-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'];
      ssl('x509', '-req', '-in', `${name}.csr`, ...ca, '-out', `${name}.crt`, '-days', '1', ...ext);
    }
    redis = await startTestRedis({
      tls: {
        certFile: f('server.crt'),
        keyFile: f('server.key'),
        caFile: f('ca.crt'),
        clientCertFile: f('client.crt'),
        clientKeyFile: f('client.key'),
      },
    });
  });
  afterAll(async () => {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects BullMQ through queue.tls*File and refuses an unverified server or a client without a certificate', async () => {
    const redisUrl = `rediss://dops:${redis.password}@127.0.0.1:${redis.port}`;
    const url = redisUrlOf({
      redisUrl,
      tlsCaFile: f('ca.crt'),
      tlsCertFile: f('client.crt'),
      tlsKeyFile: f('client.key'),
    });
    const queue = new Queue('inference', { connection: connectionOptions(url), prefix: 'tls' });
    await queue.add('j', {});
    expect(await queue.count()).toBe(1);
    await queue.close();
    // The system CAs do not know the private CA.
    expect(await pingError(redisUrl)).toBeDefined();
    // The server requires a client certificate.
    expect(await pingError(redisUrlOf({ redisUrl, tlsCaFile: f('ca.crt') }))).toBeDefined();
    // Plain TCP to the TLS port gets nowhere.
    expect(
      await pingError(`redis://dops:${redis.password}@127.0.0.1:${redis.port}`, { connectTimeout: 1000 }),
    ).toBeDefined();
  });
});

describe('every Redis configuration gives the dops user the same ACL rules', () => {
  it.each(['tools/redis-credentials.sh', 'deploy/docker-compose.yml', 'deploy/k8s/redis.yaml'])(
    '%s',
    (file) => {
      const text = readFileSync(join(repoRoot, file), 'utf8');
      expect(text).toContain(REDIS_ACL_RULES);
      // Locked behind a random hash, not `off` (that loses the AOF's transactions: REDIS_ACL_RULES).
      expect(text).toMatch(/user default on #%s /);
      expect(text).not.toContain('user default off');
    },
  );
});
