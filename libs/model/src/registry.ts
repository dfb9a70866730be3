import { EventEmitter } from 'node:events';
import { type FSWatcher, watch } from 'node:fs';
import { resolve } from 'node:path';
import { DopsError } from '@dops/errors';
import { confinePath } from '@dops/validation';
import { CoalescingWriter, readJsonFile, writeJsonAtomic } from './atomic-json';
import { type FileHasher, type FileHashes, HashCache, HashQueue, type HashJob } from './hashing';
import { buildEntry, isHashable, type ModelEntry } from './model-entry';
import { MODEL_BASES, MODEL_TYPES, type ModelBase, type ModelType } from './model-kind';
import { scanRoots } from './scan-roots';

export interface ModelRegistryOptions {
  /** Directories to scan; client paths are confined to them. At least one. */
  roots: string[];
  /** JSON file holding the entries between restarts; written 0600, its folder created 0700. */
  statePath: string;
  /**
   * List pickle files (.ckpt/.pt/.pth/.bin) and diffusers folders with pickle-only components as
   * usable; defaults to false (status 'refused'). Listing only: whether pickle loads is each
   * worker-hosting node's own setting.
   */
  allowUnsafePickle?: boolean;
  /** Hash cache file; defaults to statePath with `.hashes.json` in place of `.json`. */
  hashCachePath?: string;
  /** Defaults to `hashFile` (sha256 + BLAKE3 in one read). */
  hasher?: FileHasher;
  /** Files hashed at once; defaults to 2. */
  hashConcurrency?: number;
  /** Watch roots with fs.watch (recursive); defaults to true. */
  watch?: boolean;
  /** Full rescan period in ms, the fallback when events are missed; defaults to 60000, 0 disables. */
  pollIntervalMs?: number;
  /** Quiet time after a file-system event before rescanning, in ms; defaults to 250. */
  debounceMs?: number;
}

export type RegistryState = 'stopped' | 'starting' | 'ready' | 'closed';

export interface ModelRegistryEvents {
  added: [ModelEntry];
  removed: [ModelEntry];
  updated: [ModelEntry];
  hashed: [ModelEntry];
  /** Something the registry worked around (unreadable root, failed watch, failed save). */
  warning: [string];
}

export interface ListFilter {
  type?: ModelType;
  base?: ModelBase;
}

export interface PageRequest {
  /** Defaults to 100, at most 1000. */
  pageSize?: number;
  /** `nextPageToken` of the previous page; empty or absent for the first. */
  pageToken?: string;
}

export interface ModelPage {
  entries: ModelEntry[];
  /** Absent on the last page. */
  nextPageToken?: string;
}

export interface ScanSummary {
  added: number;
  removed: number;
  updated: number;
  unchanged: number;
  problems: string[];
}

export interface VerifyResult {
  ok: boolean;
  expected: FileHashes;
  actual: FileHashes;
}

// 2: folders with pickle-only components or symlinks out of the roots are no longer 'ok'; 3: nor
// are folders whose model components hold configs but no weights. An older state file may still
// say they are (an unchanged folder is not rebuilt), so it is dropped (hashes are cached apart).
const STATE_VERSION = 3;
const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

/**
 * The node's model registry: scans the roots, identifies every model from its header, hashes
 * in the background (cached by path+size+mtime), keeps up with added/removed files and persists
 * its entries. Every returned entry is a copy.
 */
export class ModelRegistry extends EventEmitter<ModelRegistryEvents> {
  private readonly options: Required<Omit<ModelRegistryOptions, 'hasher'>> & { hasher?: FileHasher };
  private readonly cache: HashCache;
  private readonly hashes: HashQueue;
  private readonly entries = new Map<string, ModelEntry>(); // by absolute path
  private readonly stateWriter: CoalescingWriter;
  private readonly scanner: CoalescingWriter;
  private lastSummary: ScanSummary = { added: 0, removed: 0, updated: 0, unchanged: 0, problems: [] };
  private watchers: FSWatcher[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private currentState: RegistryState = 'stopped';

  /** Throws INVALID_ARGUMENT 'roots' without roots, 'state_path' without a state path. */
  constructor(options: ModelRegistryOptions) {
    super();
    if (!options.statePath) throw DopsError.invalidArgument('state_path', 'must not be empty');
    if (options.roots.length === 0)
      throw DopsError.invalidArgument('roots', 'at least one model root is required');
    this.options = {
      roots: options.roots.map((root) => resolve(root)),
      statePath: options.statePath,
      allowUnsafePickle: options.allowUnsafePickle ?? false,
      hashCachePath: options.hashCachePath ?? options.statePath.replace(/(\.json)?$/, '.hashes.json'),
      hasher: options.hasher,
      hashConcurrency: options.hashConcurrency ?? 2,
      watch: options.watch ?? true,
      pollIntervalMs: options.pollIntervalMs ?? 60_000,
      debounceMs: options.debounceMs ?? 250,
    };
    this.cache = new HashCache(this.options.hashCachePath);
    this.hashes = new HashQueue({
      cache: this.cache,
      hasher: options.hasher,
      concurrency: this.options.hashConcurrency,
    });
    this.stateWriter = new CoalescingWriter(() =>
      writeJsonAtomic(this.options.statePath, {
        version: STATE_VERSION,
        entries: [...this.entries.values()],
      }),
    );
    this.scanner = new CoalescingWriter(async () => {
      this.lastSummary = await this.scanOnce();
    });
  }

  get state(): RegistryState {
    return this.currentState;
  }

  /**
   * Loads persisted entries and hashes, scans, starts watching and background hashing.
   * Resolves after the first scan (hashing continues; see `idle`). Throws FAILED_PRECONDITION
   * when not stopped; an unreadable state file is ignored with a warning.
   */
  async start(): Promise<void> {
    if (this.currentState !== 'stopped')
      throw new DopsError('FAILED_PRECONDITION', `registry is ${this.currentState}`);
    this.currentState = 'starting';
    await this.cache.load();
    await this.loadState();
    await this.rescan();
    if (this.options.watch) this.startWatching();
    if (this.options.pollIntervalMs > 0) {
      this.pollTimer = setInterval(
        () => void this.rescan().catch(() => undefined),
        this.options.pollIntervalMs,
      );
      this.pollTimer.unref();
    }
    this.currentState = 'ready';
  }

  /** Stops watching and hashing and writes the state one last time. Idempotent. */
  async close(): Promise<void> {
    if (this.currentState === 'closed') return;
    this.currentState = 'closed';
    for (const w of this.watchers) w.close();
    this.watchers = [];
    clearInterval(this.pollTimer);
    clearTimeout(this.debounceTimer);
    this.hashes.close();
    await this.hashes.idle();
    await this.stateWriter
      .request()
      .catch((err: Error) => this.emit('warning', `saving state failed: ${err.message}`));
  }

  /** Rescans every root now; concurrent calls share one scan (plus at most one more). */
  async rescan(): Promise<ScanSummary> {
    if (this.currentState === 'closed') throw DopsError.unavailable('registry is closed');
    await this.scanner.request();
    return structuredClone(this.lastSummary);
  }

  /** Resolves when no hashing is queued or running. */
  idle(): Promise<void> {
    return this.hashes.idle();
  }

  /**
   * One page of entries in a stable order (root order, then relative path), filtered by type and
   * base. Throws INVALID_ARGUMENT naming 'type', 'base', 'page_size' or 'page_token'.
   */
  list(filter: ListFilter = {}, page: PageRequest = {}): ModelPage {
    if (filter.type !== undefined && !MODEL_TYPES.includes(filter.type)) {
      throw DopsError.invalidArgument('type', `must be one of ${MODEL_TYPES.join(', ')}`);
    }
    if (filter.base !== undefined && !MODEL_BASES.includes(filter.base)) {
      throw DopsError.invalidArgument('base', `must be one of ${MODEL_BASES.join(', ')}`);
    }
    const pageSize = page.pageSize || DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
      throw DopsError.invalidArgument('page_size', `must be an integer from 1 to ${MAX_PAGE_SIZE}`);
    }
    const after = page.pageToken ? decodePageToken(page.pageToken) : undefined;
    const matching = [...this.entries.values()]
      .filter(
        (e) =>
          (filter.type === undefined || e.type === filter.type) &&
          (filter.base === undefined || e.base === filter.base),
      )
      .map((e) => ({ key: this.sortKey(e), entry: e }))
      .filter(({ key }) => after === undefined || key > after)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const pageEntries = matching.slice(0, pageSize);
    const result: ModelPage = { entries: pageEntries.map(({ entry }) => structuredClone(entry)) };
    if (matching.length > pageSize)
      result.nextPageToken = encodePageToken(pageEntries[pageEntries.length - 1].key);
    return result;
  }

  /** The entry with this id; throws NOT_FOUND. */
  get(id: string): ModelEntry {
    return structuredClone(this.byId(id));
  }

  /**
   * The entry whose sha256 (or A1111 addnet hash) starts with `prefix` (at least 8 hex; an AutoV2
   * hash is a 10-hex sha256 prefix). Throws INVALID_ARGUMENT 'hash' for a malformed prefix,
   * NOT_FOUND, or FAILED_PRECONDITION when several models match.
   */
  getByHash(prefix: string): ModelEntry {
    if (!/^[0-9a-fA-F]{8,64}$/.test(prefix))
      throw DopsError.invalidArgument('hash', 'must be 8 to 64 hexadecimal characters');
    const p = prefix.toLowerCase();
    const matches = [...this.entries.values()].filter(
      (e) => e.hashes && (e.hashes.sha256.startsWith(p) || e.hashes.addnet?.startsWith(p)),
    );
    if (matches.length === 0) throw DopsError.notFound('model hash', prefix);
    if (matches.length > 1) {
      throw new DopsError(
        'FAILED_PRECONDITION',
        `hash prefix '${prefix}' is ambiguous: ${matches.length} models match; give more digits`,
        {
          metadata: { hash: prefix, candidates: matches.map((e) => e.id).join(',') },
        },
      );
    }
    return structuredClone(matches[0]);
  }

  /**
   * The entry at a client path (relative to a root, tried in order, or absolute inside one).
   * Throws INVALID_ARGUMENT `field` for a malformed path or one that escapes the roots, symlinks
   * resolved (the same answer whether or not it exists); NOT_FOUND when no model is there.
   */
  async getByPath(path: string, field = 'path'): Promise<ModelEntry> {
    const confined = confinePath(path, this.options.roots, field, 'a model root');
    const entry =
      this.entries.get(confined.path) ?? [...this.entries.values()].find((e) => e.path === confined.realPath);
    if (!entry) throw DopsError.notFound('model', path);
    return structuredClone(entry);
  }

  /**
   * Re-reads the file and compares its hashes with the recorded ones. Throws NOT_FOUND,
   * UNSUPPORTED for a diffusers folder, FAILED_PRECONDITION when the model has no recorded hashes
   * (invalid file); the file-system error when the file is gone.
   */
  async verify(id: string): Promise<VerifyResult> {
    const entry = this.byId(id);
    if (entry.format === 'diffusers-folder')
      throw new DopsError('UNSUPPORTED', 'verify applies to single-file models, not diffusers folders');
    if (!entry.hashes && isHashable(entry)) await this.hashEntry(entry);
    const expected = entry.hashes;
    if (!expected)
      throw new DopsError(
        'FAILED_PRECONDITION',
        `model '${id}' has no recorded hashes (${entry.reason ?? entry.status})`,
      );
    const { hashes: actual } = await this.hashes.hash(this.hashJob(entry), { force: true });
    const ok =
      actual.sha256 === expected.sha256 &&
      actual.blake3 === expected.blake3 &&
      actual.addnet === expected.addnet;
    return { ok, expected: { ...expected }, actual };
  }

  private byId(id: string): ModelEntry {
    for (const e of this.entries.values()) if (e.id === id) return e;
    throw DopsError.notFound('model', id);
  }

  private sortKey(entry: ModelEntry): string {
    const rootIndex = this.options.roots.indexOf(entry.root);
    return `${String(rootIndex < 0 ? 9999 : rootIndex).padStart(4, '0')}\0${entry.relPath}`;
  }

  private async scanOnce(): Promise<ScanSummary> {
    const { candidates, problems } = await scanRoots(this.options.roots);
    const summary: ScanSummary = { added: 0, removed: 0, updated: 0, unchanged: 0, problems };
    for (const problem of problems) this.emit('warning', `scan: ${problem}`);
    const found = new Set<string>();
    for (const candidate of candidates) {
      found.add(candidate.path);
      const existing = this.entries.get(candidate.path);
      if (
        existing &&
        existing.sizeBytes === candidate.sizeBytes &&
        existing.mtimeMs === candidate.mtimeMs &&
        !this.pickleFlagChanged(existing)
      ) {
        summary.unchanged++;
        if (isHashable(existing) && !existing.hashes) void this.hashEntry(existing);
        continue;
      }
      let entry: ModelEntry;
      try {
        entry = await buildEntry(candidate, this.options.allowUnsafePickle);
      } catch (err) {
        // Vanished or unreadable mid-scan: the next scan decides.
        this.emit('warning', `identify ${candidate.path}: ${(err as Error).message}`);
        continue;
      }
      this.entries.set(candidate.path, entry);
      if (existing) {
        summary.updated++;
        this.emit('updated', structuredClone(entry));
      } else {
        summary.added++;
        this.emit('added', structuredClone(entry));
      }
      if (isHashable(entry)) void this.hashEntry(entry);
    }
    for (const [path, entry] of this.entries) {
      if (found.has(path)) continue;
      this.entries.delete(path);
      this.cache.delete(path);
      summary.removed++;
      this.emit('removed', structuredClone(entry));
    }
    if (summary.added + summary.removed + summary.updated > 0 || this.currentState === 'starting')
      await this.saveState();
    return summary;
  }

  /** A pickle entry recorded under the other setting of allowUnsafePickle must be rebuilt. */
  private pickleFlagChanged(entry: ModelEntry): boolean {
    return entry.pickle === true && (entry.status === 'refused') === this.options.allowUnsafePickle;
  }

  private hashJob(entry: ModelEntry): HashJob {
    const job: HashJob = { path: entry.path, size: entry.sizeBytes, mtimeMs: entry.mtimeMs };
    // The addnet hash is A1111's LoRA identity: sha256 of the tensor data after the header.
    if (entry.type === 'lora' && entry.dataOffset !== undefined)
      job.options = { addnetOffset: entry.dataOffset };
    return job;
  }

  /** Hashes an entry and records the result, unless the file changed meanwhile. Never rejects. */
  private async hashEntry(entry: ModelEntry): Promise<void> {
    try {
      const result = await this.hashes.hash(this.hashJob(entry));
      const current = this.entries.get(entry.path);
      if (current !== entry || current.hashes?.sha256 === result.hashes.sha256) return;
      current.hashes = result.hashes;
      current.hashedAt = result.hashedAt;
      if (current.status === 'hashing') current.status = 'ok';
      this.emit('hashed', structuredClone(current));
      await this.saveState();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || (err instanceof DopsError && err.code === 'UNAVAILABLE')) return; // removed or closing
      this.emit('warning', `hashing ${entry.path} failed: ${(err as Error).message}`);
    }
  }

  private async saveState(): Promise<void> {
    await this.stateWriter
      .request()
      .catch((err: Error) => this.emit('warning', `saving state failed: ${err.message}`));
  }

  private async loadState(): Promise<void> {
    let data: unknown;
    try {
      data = await readJsonFile(this.options.statePath);
    } catch (err) {
      this.emit(
        'warning',
        `ignoring unreadable state file ${this.options.statePath}: ${(err as Error).message}`,
      );
      return;
    }
    const record = data as { version?: unknown; entries?: unknown } | undefined;
    if (!record || record.version !== STATE_VERSION || !Array.isArray(record.entries)) return;
    for (const e of record.entries as ModelEntry[]) {
      // Only entries under the roots configured now; a dropped root's models are forgotten.
      if (typeof e?.path === 'string' && typeof e.id === 'string' && this.options.roots.includes(e.root))
        this.entries.set(e.path, e);
    }
  }

  private startWatching(): void {
    for (const root of this.options.roots) {
      try {
        const watcher = watch(root, { recursive: true, persistent: false }, () => this.scheduleRescan());
        watcher.on('error', (err) => {
          this.emit('warning', `watching ${root} stopped (${err.message}); relying on the periodic rescan`);
          watcher.close();
          this.watchers = this.watchers.filter((w) => w !== watcher);
        });
        this.watchers.push(watcher);
      } catch (err) {
        // Recursive watch is unavailable on some platforms/Node versions, or the root is missing.
        this.emit(
          'warning',
          `cannot watch ${root} (${(err as Error).message}); relying on the periodic rescan`,
        );
      }
    }
  }

  private scheduleRescan(): void {
    if (this.currentState === 'closed') return;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.rescan().catch(() => undefined), this.options.debounceMs);
    this.debounceTimer.unref();
  }
}

function encodePageToken(key: string): string {
  return Buffer.from(JSON.stringify({ after: key })).toString('base64url');
}

function decodePageToken(token: string): string {
  try {
    const value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof value.after === 'string') return value.after;
  } catch {
    // fall through to the error below
  }
  throw DopsError.invalidArgument('page_token', 'is not a token this registry issued');
}
