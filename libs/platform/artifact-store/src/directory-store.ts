import { createReadStream, promises as fs, type Dirent } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { checkKey, missingObject, type ArtifactStore, type StoredObject } from './artifact-store';

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Artifacts as files under one shared directory: the artifact root the workers write to, so an
 * image a stage wrote is stored where it lies (`putFile` of a file already at its key copies
 * nothing). Files are owner-only (0600 in folders made 0700), written to a temp file and renamed,
 * so no reader sees a partial object. A key resolves under the root only (checkKey refuses `..`).
 */
export class DirectoryArtifactStore implements ArtifactStore {
  readonly kind = 'directory' as const;
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  close(): void {
    // Files only: nothing to release.
  }

  localPath(key: string): string {
    return path.join(this.root, checkKey(key));
  }

  async putFile(key: string, file: string): Promise<StoredObject> {
    const target = this.localPath(key);
    if (path.resolve(file) !== target) await this.write(target, createReadStream(file));
    return this.require(key);
  }

  async put(key: string, data: Buffer): Promise<StoredObject> {
    const target = this.localPath(key);
    await this.write(target, data);
    return this.require(key);
  }

  async get(key: string): Promise<Readable> {
    const file = this.localPath(key);
    const handle = await fs.open(file, 'r').catch((err: unknown) => {
      throw isMissing(err) ? missingObject(key) : err;
    });
    return handle.createReadStream();
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const s = await fs.stat(this.localPath(key));
      return s.isFile() ? { key, size: s.size, modifiedAt: s.mtime } : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      await fs.unlink(this.localPath(key));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  async *listExpired(before: Date): AsyncIterable<string> {
    const pending = [''];
    while (pending.length) {
      const dir = pending.pop()!;
      let entries: Dirent[];
      try {
        entries = await fs.readdir(path.join(this.root, dir), { withFileTypes: true });
      } catch (err) {
        if (isMissing(err)) continue;
        throw err;
      }
      for (const entry of entries) {
        const key = dir ? `${dir}/${entry.name}` : entry.name;
        if (entry.isDirectory()) pending.push(key);
        else if (entry.isFile()) {
          const s = await fs.stat(path.join(this.root, key)).catch(() => undefined);
          if (s && s.mtime < before) yield key;
        }
      }
    }
  }

  private async require(key: string): Promise<StoredObject> {
    const s = await this.stat(key);
    if (!s) throw missingObject(key);
    return s;
  }

  private async write(target: string, data: Buffer | Readable): Promise<void> {
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    const temp = path.join(
      path.dirname(target),
      `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`,
    );
    try {
      if (Buffer.isBuffer(data)) await fs.writeFile(temp, data, { mode: 0o600, flag: 'wx' });
      else await pipeline(data, createWriteStream(temp, { mode: 0o600, flags: 'wx' }));
      await fs.rename(temp, target);
    } catch (err) {
      await fs.unlink(temp).catch(() => undefined);
      throw err;
    }
  }
}
