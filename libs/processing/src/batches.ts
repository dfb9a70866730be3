import { processingV1, type inferenceV1 } from '@dops/proto';
import type { Redis } from '@dops/queue';
import { expandBatch } from './batch-expansion';
import type { ClientQuotas } from './client-quotas';
import { IdempotencyKeys } from './idempotency';
import { newId, withDefaults, type JobLifecycle } from './job-lifecycle';
import type { JobStore } from './job-store';
import type { Keys } from './keys';
import { notFound, ownedBy } from './ownership';
import type { SessionStore } from './session-store';
import type { SpecChecks } from './spec-checks';
import { templateOf } from './workflow';

/** Batches: one job per combination of a parameter expansion, under one batch id. */
export class Batches {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly store: JobStore,
    private readonly quotas: ClientQuotas,
    private readonly sessions: SessionStore,
    private readonly idempotency: IdempotencyKeys,
    private readonly checks: SpecChecks,
    private readonly lifecycle: JobLifecycle,
    private readonly maxBatchItems: number,
  ) {}

  /** Queues a batch of `clientId`; its jobs count one by one against the queued-job quota. */
  async submit(
    clientId: string,
    req: processingV1.SubmitBatchRequest,
    traceparent?: string,
  ): Promise<{ batch: processingV1.Batch; created: boolean }> {
    await this.quotas.consumeSubmit(clientId);
    IdempotencyKeys.check(req.idempotencyKey);
    this.checks.checkDeadline(req.deadlineSeconds);
    const session = req.sessionId ? await this.sessions.requireOpen(clientId, req.sessionId) : undefined;
    const base = withDefaults(req.spec, session);
    const template = templateOf(base);
    const items = expandBatch(req.expansion, this.maxBatchItems, base?.params?.seed);
    // Every item is checked before any is queued.
    const specs = items.map((overrides) => {
      const spec = { ...base!, params: { ...base!.params!, ...overrides } as inferenceV1.GenerationParams };
      return { id: newId(), checked: this.checks.checkStatic(spec, template) };
    });
    const seen = new Set<string>();
    for (const { checked } of specs) {
      const key = JSON.stringify([checked.params.modelId, checked.params.loras, checked.params.controlnets]);
      if (seen.has(key)) continue;
      seen.add(key);
      await this.checks.checkModels(checked);
    }
    const key = req.idempotencyKey && `batch:${req.idempotencyKey}`;
    const claim = await this.idempotency.claim(clientId, key, newId());
    if (!claim.owner) return { batch: await this.get(clientId, claim.id), created: false };
    const batchId = claim.id;
    await this.lifecycle.admit(
      clientId,
      specs.map((s) => s.id),
      key,
    );
    await this.redis.set(this.keys.batch(batchId), JSON.stringify({ id: batchId, clientId }));
    for (const { id, checked } of specs)
      await this.lifecycle.create(
        await this.lifecycle.newRecord(id, checked, { clientId, req, session, traceparent, batchId }),
      );
    return { batch: await this.get(clientId, batchId), created: true };
  }

  async get(clientId: string, batchId: string): Promise<processingV1.Batch> {
    await this.require(clientId, batchId);
    const jobs = await this.store.all(this.keys.batchJobs(batchId));
    const count = (s: string) => jobs.filter((j) => j.state === s).length;
    const c = {
      queued: count('QUEUED'),
      running: count('RUNNING'),
      succeeded: count('SUCCEEDED'),
      failed: count('FAILED'),
      cancelled: count('CANCELLED'),
    };
    const state = c.running
      ? 'RUNNING'
      : c.queued
        ? 'QUEUED'
        : c.failed
          ? 'FAILED'
          : c.cancelled
            ? 'CANCELLED'
            : 'SUCCEEDED';
    return { id: batchId, jobIds: jobs.map((j) => j.id), state: processingV1.JobState[state], ...c };
  }

  async cancel(clientId: string, batchId: string): Promise<processingV1.Batch> {
    await this.require(clientId, batchId);
    await this.lifecycle.cancelAll(await this.store.all(this.keys.batchJobs(batchId)));
    return this.get(clientId, batchId);
  }

  /** NOT_FOUND naming batch_id unless the client owns the batch. */
  async require(clientId: string, batchId: string): Promise<void> {
    const raw = batchId ? await this.redis.get(this.keys.batch(batchId)) : null;
    if (!ownedBy(raw ? (JSON.parse(raw) as { clientId: string }) : undefined, clientId))
      throw notFound('batch', batchId);
  }
}
