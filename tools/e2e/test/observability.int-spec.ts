// Observability over real processes (Redis, gRPC, Python workers on CPU, the tiny SD 1.5 fixture):
// one trace from SubmitJob through both queue stages into the workers' spans, received by an
// in-process OTLP/HTTP receiver; the services' /metrics change after the job.
import * as path from 'node:path';
import { call } from '@dops/grpc-client';
import { sampleValue } from '@dops/metrics';
import { commonV1, inferenceV1, processingV1 } from '@dops/proto';
import { startOtlpReceiver, waitFor, type OtlpReceiver, type ReceivedSpan } from '@dops/testing';
import { FIXTURES, startStack, type Stack } from '../src/stack';

const { JobState } = processingV1;
const TERMINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]);
const UPSCALER = path.join(FIXTURES, 'upscaler-compact-2x-tiny.safetensors');

async function scrape(port: number | undefined): Promise<string> {
  if (!port) throw new Error('the service serves no /metrics');
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

describe('observability: one trace and the metrics of a real job', () => {
  let receiver: OtlpReceiver;
  let stack: Stack;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    stack = await startStack({
      inferenceNodes: 1,
      postprocessing: true,
      env: {
        DOPS_TELEMETRY_OTLP_ENDPOINT: receiver.endpoint,
        DOPS_TELEMETRY_OTLP_PROTOCOL: 'http/protobuf',
        // Both SDKs (Node and Python) read it: spans leave within half a second.
        OTEL_BSP_SCHEDULE_DELAY: '500',
      },
    });
  }, 300_000);
  afterAll(async () => {
    await stack?.stop();
    await receiver?.close();
  });

  it('traces SubmitJob → inference stage → worker (with step events) → postprocessing stage → worker as one trace', async () => {
    const inference = stack.nodes[0]!.inference;
    const before = {
      processing: await scrape(stack.processing.metricsPort),
      inference: await scrape(inference.metricsPort),
    };
    const modelId = await stack.modelId('sd15-tiny.safetensors');
    const { job } = await call(
      stack.client.submitJob,
      processingV1.SubmitJobRequest.fromPartial({
        spec: processingV1.JobSpec.fromPartial({
          template: 'txt2img',
          safety: commonV1.SafetyPolicy.OFF,
          params: inferenceV1.GenerationParams.fromPartial({
            modelId,
            prompt: 'a lighthouse',
            width: 64,
            height: 64,
            steps: 3,
            seed: 7,
          }),
          upscale: { modelPath: UPSCALER },
        }),
      }),
      { deadlineMs: 15_000 },
    );
    const done = await waitFor(
      async () => {
        const j = (await call(stack.client.getJob, { jobId: job!.id }, { deadlineMs: 10_000 })).job!;
        return TERMINAL.has(j.state) ? j : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 250, description: 'job terminal' },
    );
    expect(done.state).toBe(JobState.SUCCEEDED);

    // The trace: rooted at processing's SubmitJob server span.
    const submit = await waitFor(
      () => receiver.spans().find((s) => s.service === 'dops-processing' && s.name.endsWith('/SubmitJob')),
      { timeoutMs: 30_000, description: 'the SubmitJob span' },
    );
    const traceId = submit.traceId;
    const inTrace = (): ReceivedSpan[] => receiver.spans().filter((s) => s.traceId === traceId);
    const has = (service: string, name: string) =>
      inTrace().some((s) => s.service === service && s.name === name);
    await waitFor(
      () =>
        has('dops-inference-worker', 'inference.generate') &&
        has('dops-postprocessing-worker', 'postprocess.run') &&
        // each service exports in batches (5 s apart): a stage span may arrive after its worker's
        new Set(inTrace().map((s) => s.service)).size >= 5,
      { timeoutMs: 30_000, description: `worker spans in trace ${traceId}` },
    );
    const spans = inTrace();
    const services = new Set(spans.map((s) => s.service));
    for (const service of [
      'dops-processing',
      'dops-inference',
      'dops-inference-worker',
      'dops-postprocessing',
      'dops-postprocessing-worker',
    ])
      expect({ service, inTrace: services.has(service) }).toEqual({ service, inTrace: true });
    // BullMQ's own spans for the queue hops, and one stage span per stage.
    expect(spans.some((s) => s.service === 'dops-processing' && /^addFlow|^addNode/.test(s.name))).toBe(true);
    expect(spans.some((s) => s.service === 'dops-inference' && /^process inference/.test(s.name))).toBe(true);
    expect(
      spans.some((s) => s.service === 'dops-postprocessing' && /^process postprocessing/.test(s.name)),
    ).toBe(true);
    expect(has('dops-inference', 'stage generate')).toBe(true);
    expect(has('dops-postprocessing', 'stage upscale')).toBe(true);
    // The worker's span hangs under the stage span, and carries one event per step.
    const generate = spans.find((s) => s.name === 'inference.generate')!;
    const stageSpan = spans.find((s) => s.name === 'stage generate')!;
    const ids = new Map(spans.map((s) => [s.spanId, s]));
    let up: ReceivedSpan | undefined = generate;
    const chain: string[] = [];
    while (up && up.parentSpanId) {
      chain.push(`${up.service}:${up.name}`);
      up = ids.get(up.parentSpanId);
    }
    expect(chain).toContain(`dops-inference:stage generate`);
    expect(up?.spanId).toBe(submit.spanId);
    expect(stageSpan.attributes['dops.job_id']).toBe(job!.id);
    expect(generate.events.filter((e) => e.name === 'step').map((e) => e.attributes['dops.step'])).toEqual([
      1, 2, 3,
    ]);
    process.stdout.write(
      `[observability] trace ${traceId}: ${spans.length} spans from ${[...services].sort().join(', ')}; ` +
        `worker span's ancestry: ${chain.join(' ← ')}\n`,
    );
    // Every span of the job's trace is connected to its root: one trace, not pieces.
    for (const s of spans) if (s !== submit) expect(ids.has(s.parentSpanId)).toBe(true);
    // Heartbeats are never traced.
    expect(receiver.spans().some((s) => s.name === 'worker.ping')).toBe(false);
    // The job's log lines in the stage services carry its trace id.
    for (const proc of [inference, stack.postprocessing!]) {
      const lines = proc
        .output()
        .split('\n')
        .filter((l) => l.includes(job!.id) && l.includes('"stage started"'));
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) expect(JSON.parse(l)).toMatchObject({ trace_id: traceId });
    }

    // The metrics changed by this job.
    const after = {
      processing: await scrape(stack.processing.metricsPort),
      inference: await scrape(inference.metricsPort),
    };
    const finished = (text: string) =>
      sampleValue(text, 'dops_jobs_finished_total', { state: 'succeeded', code: '' }) ?? 0;
    expect(finished(after.processing) - finished(before.processing)).toBe(1);
    expect(sampleValue(after.processing, 'dops_queue_jobs', { queue: 'inference' })).toBeDefined();
    const count = (text: string, name: string, labels: Record<string, string>) =>
      sampleValue(text, name, labels) ?? 0;
    for (const [name, labels] of [
      ['dops_stage_compute_seconds_count', { stage: 'generate', outcome: 'succeeded' }],
      ['dops_stage_queue_wait_seconds_count', { stage: 'generate' }],
      ['dops_images_total', { stage: 'generate' }],
    ] as const)
      expect({
        name,
        delta: count(after.inference, name, labels) - count(before.inference, name, labels),
      }).toEqual({
        name,
        delta: 1,
      });
    expect(
      sampleValue(after.inference, 'dops_model_loads_total', { outcome: 'loaded' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleValue(after.inference, 'dops_device_memory_bytes', { device: 'cpu:0', kind: 'total' }),
    ).toBeGreaterThan(0);
    expect(sampleValue(after.inference, 'dops_worker_restarts_total', { device: 'cpu:0' })).toBe(0);
    expect(
      sampleValue(after.inference, 'dops_batch_size_count', { method: 'inference.generate' }),
    ).toBeGreaterThanOrEqual(1);
    const post = await scrape(stack.postprocessing!.metricsPort);
    expect(
      sampleValue(post, 'dops_stage_compute_seconds_count', { stage: 'upscale', outcome: 'succeeded' }),
    ).toBe(1);
  }, 300_000);
});
