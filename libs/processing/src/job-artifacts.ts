import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { ArtifactStore } from '@dops/artifact-store';
import { DopsError } from '@dops/errors';
import type { Artifact, Redis } from '@dops/queue';
import { checkConfined } from '@dops/validation';
import type { JobRecord } from './job-record';
import type { Keys } from './keys';
import { notFound } from './ownership';

export interface JobArtifactsOptions {
  /** Where the stage workers write images (their DOPS_ARTIFACT_ROOT); every path a stage returns must lie inside it. */
  root: string;
  /** How long a published artifact can be downloaded (its index entry; the store's sweep removes the bytes). */
  ttlMs: number;
}

/** What the download of one artifact needs, kept per client under its id. */
export interface PublishedArtifact {
  id: string;
  key: string;
  jobId: string;
  size: number;
  sha256: string;
  format: string;
  width: number;
  height: number;
}

/**
 * A job's files: the images of its last stage are published when it succeeds (put in the store,
 * indexed under the owning client by their content-addressed id, the hex sha256); every other
 * file its stages wrote (earlier stages' outputs, and all of a failed or cancelled job's) is
 * removed from the artifact root when the job ends.
 */
export class JobArtifacts {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly store: ArtifactStore,
    private readonly options: JobArtifactsOptions,
  ) {}

  /**
   * Puts the last stage's images of `record` in the store and indexes them for its client.
   * Returns them with their ids (and no path when the store keeps no local file). Throws
   * INTERNAL when an image is outside the artifact root or its bytes do not match its sha256,
   * UNAVAILABLE when the store cannot take it.
   */
  async publish(record: JobRecord, images: Artifact[]): Promise<Artifact[]> {
    const published: Artifact[] = [];
    try {
      for (const image of images) published.push(await this.publishOne(record, image));
    } catch (err) {
      await this.retract(record.clientId, published);
      throw err;
    }
    return published;
  }

  private async publishOne(record: JobRecord, image: Artifact): Promise<Artifact> {
    const { key, file } = this.keyOf(image.path);
    const { sha256, size } = await digest(file);
    if (image.sha256 && image.sha256 !== sha256)
      throw new DopsError('INTERNAL', `image '${key}' changed after its stage wrote it (sha256 differs)`);
    await this.store.putFile(key, file);
    const entry: PublishedArtifact = {
      id: sha256,
      key,
      jobId: record.id,
      size,
      sha256,
      format: image.format,
      width: image.width,
      height: image.height,
    };
    await this.redis.set(
      this.keys.artifact(record.clientId, sha256),
      JSON.stringify(entry),
      'PX',
      this.options.ttlMs,
    );
    return { ...image, sha256, id: sha256, path: this.store.localPath(key) ?? '' };
  }

  /** Undoes `publish` for a job that ended otherwise meanwhile: index entries, objects and files go. */
  async retract(clientId: string, published: Artifact[]): Promise<void> {
    for (const image of published) {
      if (!image.id) continue;
      const raw = await this.redis.get(this.keys.artifact(clientId, image.id));
      const entry = raw ? (JSON.parse(raw) as PublishedArtifact) : undefined;
      await this.redis.del(this.keys.artifact(clientId, image.id));
      if (entry) await this.store.delete(entry.key).catch(() => false);
    }
  }

  /**
   * Removes the files a finished job's stages wrote that nobody will read: all of them when it
   * failed or was cancelled; on success all but its published images (and those too when the
   * store keeps its own copy). Files already gone are skipped. Returns how many were removed.
   */
  async settle(record: JobRecord): Promise<number> {
    const keep =
      record.state === 'SUCCEEDED' && this.store.kind === 'directory'
        ? new Set(record.images.map((i) => i.path))
        : new Set<string>();
    return this.discard((record.outputs ?? []).filter((p) => !keep.has(p)));
  }

  /** Removes files under the artifact root (others are left alone); returns how many were removed. */
  async discard(paths: string[]): Promise<number> {
    let removed = 0;
    for (const path of paths) {
      const checked = checkConfined(path, [this.options.root], 'the artifact root');
      if (!checked.ok) continue;
      removed += await fs.unlink(checked.confined.realPath).then(
        () => 1,
        () => 0,
      );
    }
    return removed;
  }

  /** The client's artifact and its bytes; NOT_FOUND naming artifact_id for another client's, an expired or a missing one. */
  async open(clientId: string, id: string): Promise<{ entry: PublishedArtifact; bytes: Readable }> {
    const raw = await this.redis.get(this.keys.artifact(clientId, id));
    if (!raw) throw notFound('artifact', id);
    const entry = JSON.parse(raw) as PublishedArtifact;
    try {
      return { entry, bytes: await this.store.get(entry.key) };
    } catch (err) {
      if ((err as DopsError).code === 'NOT_FOUND') throw notFound('artifact', id);
      throw err;
    }
  }

  /** The store key of an image a stage wrote, and the file to read it from. INTERNAL when outside the root. */
  private keyOf(path: string): { key: string; file: string } {
    const checked = checkConfined(path, [this.options.root], 'the artifact root');
    if (!checked.ok)
      throw new DopsError(
        'INTERNAL',
        `a stage returned an image outside the artifact root: ${checked.description}`,
      );
    const { root, path: named } = checked.confined;
    return { key: relative(root, named).split(sep).join('/'), file: named };
  }
}

async function digest(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of createReadStream(file)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (err) {
    throw new DopsError('INTERNAL', `the image a stage wrote cannot be read: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { sha256: hash.digest('hex'), size };
}
