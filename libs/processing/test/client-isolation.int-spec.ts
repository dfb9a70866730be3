// One client never sees or touches another's jobs, batches or sessions: each answers NOT_FOUND
// exactly as an id that does not exist. Real Redis, the Processing domain called with client ids.
import { processingV1 } from '@dops/proto';
import { collect } from '@dops/testing';
import type { Processing } from '../src/index';
import { batchRequest, failure, jobRequest, useProcessingSuite } from './fixture';

const suite = useProcessingSuite();

async function setup() {
  return (await suite.setup()).processing;
}

/** Everything a caller learns from a failure, with the id it asked for replaced by `<id>`. */
async function answer(p: Promise<unknown>, id: string) {
  const e = await failure(p);
  const hide = (text: string) => text.split(id).join('<id>');
  return {
    code: e.code,
    message: hide(e.message),
    retryable: e.retryable,
    violations: e.violations.map((v) => ({ field: v.field, description: hide(v.description) })),
    metadata: JSON.parse(hide(JSON.stringify(e.metadata))) as unknown,
  };
}

const MISSING = 'f'.repeat(32);

/** Asserts `call(id)` answers for another client's `id` exactly what it answers for a missing one. */
async function expectSameAsMissing(call: (id: string) => Promise<unknown>, foreignId: string) {
  const foreign = await answer(call(foreignId), foreignId);
  expect(foreign.code).toBe('NOT_FOUND');
  expect(foreign).toEqual(await answer(call(MISSING), MISSING));
}

const noList = {
  state: processingV1.JobState.UNSPECIFIED,
  sessionId: '',
  batchId: '',
  pageSize: 0,
  pageToken: '',
};

async function sessionOf(processing: Processing, clientId: string) {
  return processing.createSession(clientId, {
    defaults: processingV1.SessionDefaults.fromPartial({ modelId: 'm' }),
  });
}

describe('jobs of another client', () => {
  it('answer NOT_FOUND to Get, Watch, Cancel and Retry, as a missing job does, and stay as they are', async () => {
    const processing = await setup();
    const queued = (await processing.submitJob('alice', jobRequest())).job;
    const cancelled = (await processing.submitJob('alice', jobRequest())).job;
    await processing.cancelJob('alice', cancelled.id);

    await expectSameAsMissing((id) => processing.getJob('bob', id), queued.id);
    await expectSameAsMissing(
      (id) => collect(processing.watchJob('bob', id, new AbortController().signal)),
      queued.id,
    );
    await expectSameAsMissing((id) => processing.cancelJob('bob', id), queued.id);
    await expectSameAsMissing((id) => processing.retryJob('bob', id), cancelled.id);

    expect(await processing.getJob('alice', queued.id)).toMatchObject({ state: 'QUEUED', clientId: 'alice' });
    expect(await processing.getJob('alice', cancelled.id)).toMatchObject({ state: 'CANCELLED', runs: 1 });
  });

  it("are not in another client's list, and listing by another client's session or batch is NOT_FOUND", async () => {
    const processing = await setup();
    const session = await sessionOf(processing, 'alice');
    const own = (await processing.submitJob('alice', jobRequest({ sessionId: session.id }))).job;
    const batch = (await processing.submitBatch('alice', batchRequest(2))).batch;
    const bobs = (await processing.submitJob('bob', jobRequest())).job;

    expect((await processing.listJobs('bob', noList)).jobs.map((j) => j.id)).toEqual([bobs.id]);
    const alices = (await processing.listJobs('alice', noList)).jobs.map((j) => j.id);
    expect(alices.sort()).toEqual([own.id, ...batch.jobIds].sort());
    await expectSameAsMissing((id) => processing.listJobs('bob', { ...noList, sessionId: id }), session.id);
    await expectSameAsMissing((id) => processing.listJobs('bob', { ...noList, batchId: id }), batch.id);
  });
});

describe('batches of another client', () => {
  it('answer NOT_FOUND to Get and Cancel, as a missing batch does, and keep their jobs', async () => {
    const processing = await setup();
    const batch = (await processing.submitBatch('alice', batchRequest(3))).batch;
    await expectSameAsMissing((id) => processing.getBatch('bob', id), batch.id);
    await expectSameAsMissing((id) => processing.cancelBatch('bob', id), batch.id);
    expect(await processing.getBatch('alice', batch.id)).toMatchObject({ queued: 3, cancelled: 0 });
  });
});

describe('sessions of another client', () => {
  it('answer NOT_FOUND to Get, Pause, Resume, Cancel and to a job joining them, as a missing session does', async () => {
    const processing = await setup();
    const session = await sessionOf(processing, 'alice');
    const job = (await processing.submitJob('alice', jobRequest({ sessionId: session.id }))).job;

    await expectSameAsMissing((id) => processing.requireSession('bob', id), session.id);
    await expectSameAsMissing((id) => processing.pauseSession('bob', id), session.id);
    await expectSameAsMissing((id) => processing.resumeSession('bob', id), session.id);
    await expectSameAsMissing((id) => processing.cancelSession('bob', id), session.id);
    await expectSameAsMissing((id) => processing.submitJob('bob', jobRequest({ sessionId: id })), session.id);
    await expectSameAsMissing(
      (id) => processing.submitBatch('bob', batchRequest(2, { sessionId: id })),
      session.id,
    );

    expect(await processing.requireSession('alice', session.id)).toMatchObject({ state: 'ACTIVE' });
    expect(await processing.getJob('alice', job.id)).toMatchObject({ state: 'QUEUED', held: false });
    expect((await processing.listJobs('bob', noList)).jobs).toEqual([]);
  });
});

describe('idempotency keys', () => {
  it('are per client: the same key from two clients gives two jobs, from one client one', async () => {
    const processing = await setup();
    const a = await processing.submitJob('alice', jobRequest({ idempotencyKey: 'k' }));
    const b = await processing.submitJob('bob', jobRequest({ idempotencyKey: 'k' }));
    const again = await processing.submitJob('alice', jobRequest({ idempotencyKey: 'k' }));
    expect([a.created, b.created, again.created]).toEqual([true, true, false]);
    expect(b.job.id).not.toBe(a.job.id);
    expect(b.job.clientId).toBe('bob');
    expect(again.job.id).toBe(a.job.id);

    const batchA = await processing.submitBatch('alice', batchRequest(2, { idempotencyKey: 'kb' }));
    const batchB = await processing.submitBatch('bob', batchRequest(2, { idempotencyKey: 'kb' }));
    expect(batchB.created).toBe(true);
    expect(batchB.batch.id).not.toBe(batchA.batch.id);
    expect((await processing.getBatch('bob', batchB.batch.id)).queued).toBe(2);
  });

  it('cannot reach another client through a client id holding the key separator', async () => {
    const processing = await setup();
    const a = await processing.submitJob('a', jobRequest({ idempotencyKey: 'b:c' }));
    const b = await processing.submitJob('a:b', jobRequest({ idempotencyKey: 'c' }));
    expect(b.created).toBe(true);
    expect(b.job.id).not.toBe(a.job.id);
  });

  it('refuses a key longer than 256 characters, naming the field', async () => {
    const processing = await setup();
    const e = await failure(processing.submitJob('alice', jobRequest({ idempotencyKey: 'k'.repeat(257) })));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.violations[0]!.field).toBe('idempotency_key');
  });
});
