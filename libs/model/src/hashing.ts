import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createBLAKE3 } from 'hash-wasm';
import { DopsError } from '@dops/errors';
import { CoalescingWriter, readJsonFile, writeJsonAtomic } from './atomic-json';

export interface FileHashes {
  /** Lower-case hex sha256 of the whole file. */
  sha256: string;
  /** A1111 "AutoV2" short hash: the first 10 hex of sha256. */
  autov2: string;
  /** Lower-case hex BLAKE3-256 of the whole file. */
  blake3: string;
  /** A1111/kohya "addnet" hash of a safetensors LoRA: sha256 of the bytes after the header. */
  addnet?: string;
}

export interface HashOptions {
  /** File offset where the addnet hash starts (8 + header length); no addnet hash without it. */
  addnetOffset?: number;
  /** Aborts the read; the promise rejects with DopsError CANCELLED. */
  signal?: AbortSignal;
}

/** Computes FileHashes for a path; injectable so tests (and benchmarks) can count or fake work. */
export type FileHasher = (path: string, options?: HashOptions) => Promise<FileHashes>;

const READ_CHUNK_BYTES = 4 * 1024 * 1024;

/** AutoV2 short hash (first 10 hex) of a full sha256 hex digest. */
export function autoV2(sha256: string): string {
  return sha256.slice(0, 10);
}

/**
 * sha256, AutoV2, BLAKE3 and (with `addnetOffset`) the addnet hash in one sequential read of the
 * file. Throws the file-system error (ENOENT, EACCES) unchanged, DopsError CANCELLED on abort.
 */
export const hashFile: FileHasher = async (path, options = {}) => {
  const sha = createHash('sha256');
  const blake = await createBLAKE3();
  blake.init();
  const addnetOffset = options.addnetOffset;
  const addnet = addnetOffset === undefined ? undefined : createHash('sha256');
  let position = 0;
  const stream = createReadStream(path, { highWaterMark: READ_CHUNK_BYTES, signal: options.signal });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      sha.update(chunk);
      blake.update(chunk);
      if (addnet && addnetOffset !== undefined && position + chunk.length > addnetOffset) {
        addnet.update(position >= addnetOffset ? chunk : chunk.subarray(addnetOffset - position));
      }
      position += chunk.length;
    }
  } catch (err) {
    if ((err as Error).name === 'AbortError')
      throw new DopsError('CANCELLED', `hashing ${path} was cancelled`, { cause: err });
    throw err;
  }
  const sha256 = sha.digest('hex');
  const hashes: FileHashes = { sha256, autov2: autoV2(sha256), blake3: blake.digest('hex') };
  if (addnet) hashes.addnet = addnet.digest('hex');
  return hashes;
};

export interface HashCacheEntry {
  size: number;
  mtimeMs: number;
  hashes: FileHashes;
  /** ISO time the hashes were computed; unchanged while the cache answers. */
  hashedAt: string;
}

const CACHE_VERSION = 1;

/**
 * Hashes by absolute path, valid while the file's size and mtimeMs are unchanged, persisted as
 * one JSON file (atomic replace) so a restart does not re-hash.
 */
export class HashCache {
  private entries = new Map<string, HashCacheEntry>();
  private readonly writer = new CoalescingWriter(() =>
    writeJsonAtomic(this.filePath, { version: CACHE_VERSION, entries: Object.fromEntries(this.entries) }),
  );

  constructor(readonly filePath: string) {}

  /** Loads the file; a missing file is an empty cache, an unreadable or foreign one is ignored (re-hash, never fail). */
  async load(): Promise<void> {
    let data: unknown;
    try {
      data = await readJsonFile(this.filePath);
    } catch {
      data = undefined;
    }
    this.entries.clear();
    const record = data as { version?: unknown; entries?: Record<string, HashCacheEntry> } | undefined;
    if (record?.version !== CACHE_VERSION || typeof record.entries !== 'object' || record.entries === null)
      return;
    for (const [path, entry] of Object.entries(record.entries)) {
      if (isCacheEntry(entry)) this.entries.set(path, entry);
    }
  }

  /** The cached entry when path, size and mtimeMs all match; undefined otherwise. */
  get(path: string, size: number, mtimeMs: number): HashCacheEntry | undefined {
    const entry = this.entries.get(path);
    return entry && entry.size === size && entry.mtimeMs === mtimeMs ? entry : undefined;
  }

  set(path: string, entry: HashCacheEntry): void {
    this.entries.set(path, entry);
  }

  delete(path: string): void {
    this.entries.delete(path);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Persists the cache; concurrent calls coalesce into at most one more write. Throws on I/O errors. */
  save(): Promise<void> {
    return this.writer.request();
  }
}

function isCacheEntry(value: unknown): value is HashCacheEntry {
  const e = value as HashCacheEntry;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.size === 'number' &&
    typeof e.mtimeMs === 'number' &&
    typeof e.hashedAt === 'string' &&
    typeof e.hashes?.sha256 === 'string' &&
    typeof e.hashes.blake3 === 'string' &&
    typeof e.hashes.autov2 === 'string'
  );
}

export interface HashJob {
  path: string;
  size: number;
  mtimeMs: number;
  options?: HashOptions;
}

export interface HashQueueOptions {
  cache: HashCache;
  /** Defaults to `hashFile`. */
  hasher?: FileHasher;
  /** Files hashed at once; defaults to 2 (hashing is disk-bound; more only thrashes a spinning disk). */
  concurrency?: number;
}

/**
 * Background hashing with bounded concurrency. A cache hit answers at once; the same file
 * (path + size + mtime) queued twice is hashed once. Results are written to the cache and the
 * cache file is saved after each.
 */
export class HashQueue {
  private readonly hasher: FileHasher;
  private readonly concurrency: number;
  private readonly waiting: Array<() => void> = [];
  private readonly inFlight = new Map<string, Promise<HashCacheEntry>>();
  private active = 0;
  private closed = false;

  constructor(private readonly options: HashQueueOptions) {
    this.hasher = options.hasher ?? hashFile;
    this.concurrency = Math.max(1, options.concurrency ?? 2);
  }

  /** Hashes of the file, from the cache or computed; rejects with the hasher's error or UNAVAILABLE after close(). */
  hash(job: HashJob, { force = false }: { force?: boolean } = {}): Promise<HashCacheEntry> {
    const cached = force ? undefined : this.cached(job);
    if (cached) return Promise.resolve(cached);
    if (this.closed) return Promise.reject(DopsError.unavailable('hash queue is closed'));
    const key = `${job.path}\0${job.size}\0${job.mtimeMs}\0${force ? 'force' : ''}`;
    const existing = this.inFlight.get(key);
    if (existing) return existing;
    const promise = this.run(job, force).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.inFlight.size;
  }

  /** Resolves when nothing is queued or running (errors are the callers' to handle). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight.values()]);
  }

  /** Refuses new work; queued jobs reject with UNAVAILABLE, running ones finish. */
  close(): void {
    this.closed = true;
    for (const release of this.waiting.splice(0)) release();
  }

  private async run(job: HashJob, force: boolean): Promise<HashCacheEntry> {
    const waited = await this.acquire();
    try {
      if (waited && this.closed) throw DopsError.unavailable('hash queue is closed');
      // A cache entry may have landed while this job waited.
      const cached = force ? undefined : this.cached(job);
      if (cached) return cached;
      const hashes = await this.hasher(job.path, job.options);
      const entry: HashCacheEntry = {
        size: job.size,
        mtimeMs: job.mtimeMs,
        hashes,
        hashedAt: new Date().toISOString(),
      };
      if (!force) {
        this.options.cache.set(job.path, entry);
        await this.options.cache.save();
      }
      return entry;
    } finally {
      this.release();
    }
  }

  /** A cache hit only counts when it carries every hash the job asks for. */
  private cached(job: HashJob): HashCacheEntry | undefined {
    const entry = this.options.cache.get(job.path, job.size, job.mtimeMs);
    if (entry && job.options?.addnetOffset !== undefined && entry.hashes.addnet === undefined)
      return undefined;
    return entry;
  }

  /** Takes a slot; resolves true when the job had to wait for one. */
  private acquire(): Promise<boolean> {
    if (this.active < this.concurrency || this.closed) {
      this.active++;
      return Promise.resolve(false);
    }
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.active++;
        resolve(true);
      }),
    );
  }

  private release(): void {
    this.active--;
    const next = this.waiting.shift();
    if (next) next();
  }
}
