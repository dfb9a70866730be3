// One owner per device, tried as an operator would over real processes: the device and memory
// services start no worker; their answers and controls are about the workers that run the jobs
// (inference, postprocessing), and cordon, drain and reset act on a real job.
import { call, createClient } from '@dops/grpc-client';
import { commonV1, deviceV1, inferenceV1, memoryV1, modelV1, processingV1 } from '@dops/proto';
import { testCredentials, waitFor } from '@dops/testing';
import { startStack, type Stack } from '../src/stack';

const { JobState } = processingV1;
let stack: Stack;
let MODEL = '';
let devices: deviceV1.DeviceServiceClient;
let memory: memoryV1.MemoryServiceClient;

function spec(steps: number) {
  return processingV1.JobSpec.fromPartial({
    template: 'txt2img',
    safety: commonV1.SafetyPolicy.OFF,
    params: inferenceV1.GenerationParams.fromPartial({
      modelId: MODEL,
      prompt: 'a lighthouse',
      width: 64,
      height: 64,
      steps,
      seed: 3,
    }),
  });
}

async function submit(steps: number): Promise<string> {
  const { job } = await call(
    stack.client.submitJob,
    processingV1.SubmitJobRequest.fromPartial({ spec: spec(steps) }),
    {
      deadlineMs: 15_000,
    },
  );
  return job!.id;
}

async function job(jobId: string): Promise<processingV1.Job> {
  return (await call(stack.client.getJob, { jobId }, { deadlineMs: 10_000 })).job!;
}

const until = (jobId: string, states: processingV1.JobState[], timeoutMs = 120_000) =>
  waitFor(async () => ((s) => (states.includes(s.state) ? s : undefined))(await job(jobId)), {
    timeoutMs,
    intervalMs: 100,
    description: `job ${jobId} in ${states.join('/')}`,
  });

beforeAll(async () => {
  stack = await startStack({ inferenceNodes: 1, postprocessing: true, deviceAndMemory: true });
  MODEL = await stack.modelId('sd15-tiny.safetensors');
  devices = createClient(deviceV1.DeviceServiceClient, stack.device!.address, {
    credentials: testCredentials('ops'),
  });
  memory = createClient(memoryV1.MemoryServiceClient, stack.memory!.address, {
    credentials: testCredentials('ops'),
  });
  // The model is loaded on the first job; after it, jobs run on a warm worker.
  await until(await submit(1), [JobState.SUCCEEDED]);
});
afterAll(async () => {
  devices?.close();
  memory?.close();
  await stack?.stop();
});

describe('one owner per device', () => {
  it('only inference and postprocessing run Python workers: one per device each; device, memory, model and processing none', () => {
    const count = (p: (typeof stack)['processing'] | undefined) => (p ? stack.workerPids(p).length : -1);
    expect({
      device: count(stack.device),
      memory: count(stack.memory),
      processing: count(stack.processing),
      model: count(stack.nodes[0]!.model),
      inference: count(stack.nodes[0]!.inference),
      postprocessing: count(stack.postprocessing),
    }).toEqual({ device: 0, memory: 0, processing: 0, model: 0, inference: 1, postprocessing: 1 });
  });

  it('reports the workers that run the jobs, and their memory', async () => {
    const { devices: list } = await call(devices.listDevices, {});
    const cpu = list.find((d) => d.id === 'cpu:0')!;
    const pids = (p: (typeof stack)['processing']) => stack.workerPids(p);
    expect(cpu.workers.map((w) => [w.service, w.health?.workerPid])).toEqual([
      ['inference', pids(stack.nodes[0]!.inference)[0]],
      ['postprocessing', pids(stack.postprocessing!)[0]],
    ]);
    const { snapshot } = await call(memory.getMemory, {});
    expect(snapshot!.workers.map((w) => [w.service, w.pid]).sort()).toEqual(
      [
        ['inference', pids(stack.nodes[0]!.inference)[0]],
        ['postprocessing', pids(stack.postprocessing!)[0]],
      ].sort(),
    );
    // The inference worker holds the loaded model: far more than an idle worker.
    const rss = Object.fromEntries(snapshot!.workers.map((w) => [w.service, w.rssBytes]));
    expect(rss['inference']).toBeGreaterThan(0);
  });

  it('cordon: a job submitted afterwards does not start; uncordon: it runs', async () => {
    await call(devices.cordonDevice, { deviceId: 'cpu:0' });
    const id = await submit(1);
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await job(id)).state).toBe(JobState.QUEUED);
    await call(devices.uncordonDevice, { deviceId: 'cpu:0' });
    expect((await until(id, [JobState.SUCCEEDED, JobState.FAILED])).state).toBe(JobState.SUCCEEDED);
  });

  it('drain: returns only when the running job has ended, and says what runs when it times out first', async () => {
    const id = await submit(30);
    await until(id, [JobState.RUNNING]);
    await waitFor(
      async () =>
        (await call(devices.getDevice, { deviceId: 'cpu:0' })).device!.workers[0]!.health!.activeRequests > 0,
      {
        timeoutMs: 30_000,
      },
    );
    const short = await call(devices.drainDevice, { deviceId: 'cpu:0', timeoutMs: 200 });
    expect(short).toMatchObject({ drained: false, running: ['inference: 1 job'] });
    const full = await call(
      devices.drainDevice,
      { deviceId: 'cpu:0', timeoutMs: 300_000 },
      { deadlineMs: 310_000 },
    );
    const drainedAt = Date.now();
    expect(full.drained).toBe(true);
    const done = await until(id, [JobState.SUCCEEDED, JobState.FAILED], 10_000);
    expect(done.state).toBe(JobState.SUCCEEDED);
    // The job's stage had ended (its result recorded) no later than the drain's answer, give or take the event delay.
    expect(done.updatedAt!.getTime()).toBeLessThanOrEqual(drainedAt + 2_000);
    await call(devices.uncordonDevice, { deviceId: 'cpu:0' });
  }, 360_000);

  it('cancel of a job waiting for the device never touches the worker; the running job goes on', async () => {
    const workerPid = stack.workerPids(stack.nodes[0]!.inference)[0];
    const running = await submit(30);
    await until(running, [JobState.RUNNING]);
    // Another model's job waits in the device's lane (not inside the worker) behind the running one.
    const waiting = await submit(2);
    await until(waiting, [JobState.RUNNING, JobState.QUEUED], 10_000);
    await new Promise((r) => setTimeout(r, 500));
    await call(stack.client.cancelJob, { jobId: waiting }, { deadlineMs: 10_000 });
    expect(
      (await until(waiting, [JobState.CANCELLED, JobState.SUCCEEDED, JobState.FAILED], 10_000)).state,
    ).toBe(JobState.CANCELLED);
    expect(
      (await until(running, [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED], 300_000)).state,
    ).toBe(JobState.SUCCEEDED);
    expect(stack.workerPids(stack.nodes[0]!.inference)).toEqual([workerPid]);
  }, 360_000);

  it('unloading a model in use waits for the running job, never stops it', async () => {
    const models = createClient(modelV1.ModelServiceClient, stack.nodes[0]!.model.address, {
      credentials: testCredentials('ops'),
    });
    try {
      const running = await submit(15);
      await until(running, [JobState.RUNNING]);
      await waitFor(
        async () =>
          (await call(devices.getDevice, { deviceId: 'cpu:0' })).device!.workers[0]!.health!.activeRequests >
          0,
        {
          timeoutMs: 30_000,
        },
      );
      const unload = await call(
        models.unloadModel,
        { modelId: MODEL, deviceId: 'cpu:0', tier: modelV1.Tier.VRAM },
        { deadlineMs: 300_000 },
      );
      expect(unload.unloaded).toBe(true);
      // The job was not killed: it finished, and before the unload answered.
      const done = await until(running, [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED], 10_000);
      expect(done.state).toBe(JobState.SUCCEEDED);
      // The next job loads the model again and runs.
      expect((await until(await submit(1), [JobState.SUCCEEDED, JobState.FAILED])).state).toBe(
        JobState.SUCCEEDED,
      );
    } finally {
      models.close();
    }
  }, 360_000);

  it('reset: restarts the workers that run the device’s work (inference and postprocessing), and jobs run after it', async () => {
    const before = [
      stack.workerPids(stack.nodes[0]!.inference)[0],
      stack.workerPids(stack.postprocessing!)[0],
    ];
    const { device } = await call(
      devices.resetDevice,
      deviceV1.ResetDeviceRequest.fromPartial({ deviceId: 'cpu:0' }),
      {
        deadlineMs: 120_000,
      },
    );
    const after = device!.workers.map((w) => w.health!.workerPid);
    expect(after[0]).not.toBe(before[0]);
    expect(after[1]).not.toBe(before[1]);
    expect(after).toEqual([
      stack.workerPids(stack.nodes[0]!.inference)[0],
      stack.workerPids(stack.postprocessing!)[0],
    ]);
    expect(device!.scheduling).toBe(deviceV1.SchedulingState.SCHEDULABLE);
    expect((await until(await submit(1), [JobState.SUCCEEDED, JobState.FAILED])).state).toBe(
      JobState.SUCCEEDED,
    );
  }, 240_000);
});
