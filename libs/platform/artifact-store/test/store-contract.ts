// The behaviour every ArtifactStore backend shares, run against each (directory, S3 on moto).
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { DopsError } from '@dops/errors';
import type { ArtifactStore } from '../src/index';

export async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export function storeContract(store: () => ArtifactStore) {
  it('stores a local file under a key and streams back the same bytes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dops-store-src-'));
    const data = Buffer.alloc(300_000, 0);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
    const file = path.join(dir, 'image.png');
    writeFileSync(file, data);
    const stored = await store().putFile('2026-12-07/image.png', file);
    expect(stored).toMatchObject({ key: '2026-12-07/image.png', size: data.length });
    const back = await bytesOf(await store().get('2026-12-07/image.png'));
    expect(sha256(back)).toBe(sha256(data));
    expect((await store().stat('2026-12-07/image.png'))?.size).toBe(data.length);
  });

  it('answers NOT_FOUND for a missing object and undefined from stat', async () => {
    const err = (await store()
      .get('nothing/here.png')
      .catch((e: unknown) => e)) as DopsError;
    expect(err.code).toBe('NOT_FOUND');
    expect(await store().stat('nothing/here.png')).toBeUndefined();
  });

  it('deletes an object (true once, then false)', async () => {
    await store().put('d/x.bin', Buffer.from('abc'));
    expect(await store().delete('d/x.bin')).toBe(true);
    expect(await store().stat('d/x.bin')).toBeUndefined();
    expect(await store().delete('d/x.bin')).toBe(false);
  });

  it('lists the objects written before a time, not those after', async () => {
    await store().put('old/a.bin', Buffer.from('a'));
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const cut = new Date();
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await store().put('new/b.bin', Buffer.from('b'));
    const expired: string[] = [];
    for await (const key of store().listExpired(cut)) expired.push(key);
    expect(expired).toContain('old/a.bin');
    expect(expired).not.toContain('new/b.bin');
  });

  it('refuses keys that could leave the store', async () => {
    for (const key of ['../etc/passwd', '/abs.png', 'a//b.png', 'a/./b', '']) {
      const err = (await store()
        .put(key, Buffer.from('x'))
        .catch((e: unknown) => e)) as DopsError;
      expect(err.code).toBe('INVALID_ARGUMENT');
    }
  });
}
