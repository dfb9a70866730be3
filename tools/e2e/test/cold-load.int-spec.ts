// Model loads decided on the node, over real processes: a queued job for a model no worker holds is
// loaded by inference itself (the model service only answers what the file is: none of its loads
// run), and the node announcement in Redis follows what the worker holds through load, an
// operator's unload and the next job's load.
import { call, createClient, stream } from '@dops/grpc-client';
import { commonV1, inferenceV1, modelV1, processingV1 } from '@dops/proto';
import { createRedis, listNodes, type Redis } from '@dops/queue';
import { testCredentials, waitFor } from '@dops/testing';
import { startStack, type Stack } from '../src/stack';

const { JobState } = processingV1;
let stack: Stack;
let redis: Redis;
let models: modelV1.ModelServiceClient;
let MODEL = '';
const loadEvents: modelV1.LoadEvent[] = [];
const watching = new AbortController();

async function runJob(): Promise<processingV1.Job> {
  const { job } = await call(
    stack.client.submitJob,
    processingV1.SubmitJobRequest.fromPartial({
      spec: {
        template: 'txt2img',
        safety: commonV1.SafetyPolicy.OFF,
        params: inferenceV1.GenerationParams.fromPartial({
          modelId: MODEL,
          prompt: 'a lighthouse',
          width: 64,
          height: 64,
          steps: 1,
          seed: 5,
        }),
      },
    }),
    { deadlineMs: 15_000 },
  );
  return waitFor(
    async () => {
      const now = (await call(stack.client.getJob, { jobId: job!.id }, { deadlineMs: 10_000 })).job!;
      return [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED].includes(now.state) ? now : undefined;
    },
    { timeoutMs: 180_000, intervalMs: 200, description: `job ${job!.id} ended` },
  );
}

/** Waits until node1 announces exactly `expected` on cpu:0. */
const announced = (expected: string[]) =>
  waitFor(
    async () => {
      const node = (await listNodes(redis, stack.prefix)).find((n) => n.nodeId === 'node1');
      const held = node?.devices.find((d) => d.id === 'cpu:0')?.residentModels ?? [];
      return JSON.stringify([...held].sort()) === JSON.stringify(expected) ? held : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, description: `node1 announces [${expected.join(', ')}]` },
  );

beforeAll(async () => {
  stack = await startStack({ inferenceNodes: 1, postprocessing: false });
  redis = createRedis(stack.redis.url);
  MODEL = await stack.modelId('sd15-tiny.safetensors');
  models = createClient(modelV1.ModelServiceClient, stack.nodes[0]!.model.address, {
    credentials: testCredentials('ops'),
  });
  void (async () => {
    for await (const m of stream(models.watchLoadEvents, { deviceId: '' }, { signal: watching.signal }))
      loadEvents.push(m.event!);
  })().catch(() => undefined);
  // The stream subscribes on its first pull.
  await new Promise((resolve) => setTimeout(resolve, 200));
});
afterAll(async () => {
  watching.abort();
  models?.close();
  redis?.disconnect();
  await stack?.stop();
});

describe('model loads decided on the node', () => {
  it('runs the first job for a model no worker holds, loaded by inference itself, and announces it', async () => {
    await announced([]);
    expect((await runJob()).state).toBe(JobState.SUCCEEDED);
    await announced([MODEL]);
    // The model service answered GetModel; it loaded nothing (its loads would show as events).
    expect(loadEvents).toEqual([]);
  }, 240_000);

  it('follows an operator unload through the model service, and the next job’s load', async () => {
    const { unloaded } = await call(
      models.unloadModel,
      { modelId: MODEL, deviceId: 'cpu:0', tier: modelV1.Tier.VRAM },
      { deadlineMs: 120_000 },
    );
    expect(unloaded).toBe(true);
    await announced([]);
    expect((await runJob()).state).toBe(JobState.SUCCEEDED);
    await announced([MODEL]);
    expect(loadEvents.map((e) => e.kind)).toEqual([modelV1.LoadEventKind.UNLOADED]);
  }, 240_000);
});
