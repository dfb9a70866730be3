import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildSafetensors, tempDir } from '../test/safetensors-writer';
import { autoV2, type FileHasher, HashCache, HashQueue, hashFile } from './hashing';

const BLAKE3_EMPTY = 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262';
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('hashFile', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(() => cleanup());

  it('matches the known BLAKE3 and sha256 vectors of empty input', async () => {
    const path = join(dir, 'empty');
    await writeFile(path, '');
    const h = await hashFile(path);
    expect(h.blake3).toBe(BLAKE3_EMPTY);
    expect(h.sha256).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(h.autov2).toBe('e3b0c44298');
    expect(h.addnet).toBeUndefined();
  });

  it('agrees with Node crypto across several read chunks; AutoV2 is the 10-hex sha256 prefix', async () => {
    const bytes = Buffer.alloc(9 * 1024 * 1024 + 17);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 256;
    const path = join(dir, 'big.bin');
    await writeFile(path, bytes);
    const h = await hashFile(path);
    expect(h.sha256).toBe(sha256(bytes));
    expect(h.autov2).toHaveLength(10);
    expect(h.autov2).toBe(autoV2(h.sha256));
    expect(h.blake3).toMatch(/^[0-9a-f]{64}$/);
  });

  it('computes the addnet hash as sha256 of the data section only', async () => {
    const bytes = buildSafetensors({ a: { shape: [300, 700] }, b: { shape: [5] } }, { ss_output_name: 'x' });
    const path = join(dir, 'lora.safetensors');
    await writeFile(path, bytes);
    const offset = 8 + Number(bytes.readBigUInt64LE(0));
    const h = await hashFile(path, { addnetOffset: offset });
    expect(h.addnet).toBe(sha256(bytes.subarray(offset)));
    expect(h.addnet).not.toBe(h.sha256);
    expect(h.sha256).toBe(sha256(bytes));
  });

  it('rejects with CANCELLED when aborted, ENOENT when missing', async () => {
    const path = join(dir, 'f');
    await writeFile(path, Buffer.alloc(1024));
    const controller = new AbortController();
    controller.abort();
    await expect(hashFile(path, { signal: controller.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(hashFile(join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('HashCache and HashQueue', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(() => cleanup());

  function countingHasher(): { hasher: FileHasher; calls: string[] } {
    const calls: string[] = [];
    return { calls, hasher: async (path, options) => (calls.push(path), hashFile(path, options)) };
  }

  it('persists across instances and is keyed by path + size + mtime', async () => {
    const file = join(dir, 'a.bin');
    await writeFile(file, 'abc');
    const cachePath = join(dir, 'state', 'hashes.json');
    const { hasher, calls } = countingHasher();
    const first = await new HashQueue({ cache: new HashCache(cachePath), hasher }).hash({
      path: file,
      size: 3,
      mtimeMs: 1,
    });

    const cache = new HashCache(cachePath);
    await cache.load();
    const queue = new HashQueue({ cache, hasher });
    const again = await queue.hash({ path: file, size: 3, mtimeMs: 1 });
    expect(again.hashedAt).toBe(first.hashedAt);
    expect(calls).toHaveLength(1);
    await queue.hash({ path: file, size: 3, mtimeMs: 2 });
    expect(calls).toHaveLength(2);
    expect(JSON.parse(await readFile(cachePath, 'utf8')).version).toBe(1);
  });

  it('treats a corrupt cache file as empty', async () => {
    const cachePath = join(dir, 'hashes.json');
    await writeFile(cachePath, '{not json');
    const cache = new HashCache(cachePath);
    await cache.load();
    expect(cache.size).toBe(0);
  });

  it('bounds concurrency and hashes a duplicate job once', async () => {
    let running = 0;
    let peak = 0;
    const calls: string[] = [];
    const hasher: FileHasher = async (path) => {
      calls.push(path);
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      return { sha256: path.padEnd(64, '0'), autov2: 'x', blake3: 'y' };
    };
    const queue = new HashQueue({ cache: new HashCache(join(dir, 'c.json')), hasher, concurrency: 2 });
    const jobs = ['a', 'b', 'c', 'd', 'e'].map((p) => queue.hash({ path: p, size: 1, mtimeMs: 1 }));
    jobs.push(queue.hash({ path: 'a', size: 1, mtimeMs: 1 }));
    await Promise.all(jobs);
    expect(peak).toBe(2);
    expect(calls.sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    await queue.idle();
    expect(queue.pending).toBe(0);
  });

  it('rejects queued work with UNAVAILABLE after close', async () => {
    const hasher: FileHasher = () =>
      new Promise((r) => setTimeout(() => r({ sha256: '0', autov2: '0', blake3: '0' }), 20));
    const queue = new HashQueue({ cache: new HashCache(join(dir, 'c.json')), hasher, concurrency: 1 });
    const first = queue.hash({ path: 'a', size: 1, mtimeMs: 1 });
    const second = queue.hash({ path: 'b', size: 1, mtimeMs: 1 });
    queue.close();
    const [a, b] = await Promise.allSettled([first, second]);
    expect(a.status).toBe('fulfilled');
    expect(b).toMatchObject({ status: 'rejected', reason: { code: 'UNAVAILABLE' } });
    await expect(queue.hash({ path: 'c', size: 1, mtimeMs: 1 })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });
});
