import { DirectoryArtifactStore, type ArtifactStore } from '@dops/artifact-store';

export interface ArtifactRetentionOptions {
  /** Artifacts older than this are deleted. */
  ttlMs: number;
  /** How often to look. */
  intervalMs: number;
  /** The artifact root the workers write to: swept too when the store is not that directory (orphans of a crash). */
  root: string;
  logger?: {
    info(o: object, m?: string): void;
    warn(o: object, m?: string): void;
  };
}

/**
 * Retention by age: every `intervalMs`, each object of the store last written more than `ttlMs`
 * ago is deleted, and so is each such file in the artifact root when the store is elsewhere (S3).
 * Replicas may sweep at once: deletes of what is gone already are no-ops.
 */
export class ArtifactRetention {
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  private readonly stores: ArtifactStore[];

  constructor(
    store: ArtifactStore,
    private readonly options: ArtifactRetentionOptions,
  ) {
    this.stores = store.kind === 'directory' ? [store] : [store, new DirectoryArtifactStore(options.root)];
  }

  start(): void {
    this.timer ??= setInterval(() => void this.sweep().catch(() => undefined), this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One pass now (one at a time); resolves to how many objects were deleted. Rejects when a store cannot be listed. */
  sweep(): Promise<number> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<number> {
    const before = new Date(Date.now() - this.options.ttlMs);
    let deleted = 0;
    for (const store of this.stores) {
      try {
        // A key the store cannot delete (a name it refuses) is left; the rest go on.
        for await (const key of store.listExpired(before))
          if (await store.delete(key).catch(() => false)) deleted++;
      } catch (err) {
        this.options.logger?.warn(
          { store: store.kind, err: (err as Error).message },
          'artifact sweep failed',
        );
        throw err;
      }
    }
    if (deleted) this.options.logger?.info({ deleted }, 'expired artifacts deleted');
    return deleted;
  }
}
