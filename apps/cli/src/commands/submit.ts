import * as fs from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { call } from '@dops/grpc-client';
import { commonV1, inferenceV1, processingV1 } from '@dops/proto';
import type { Clients } from '../clients';
import type { Output } from '../output';
import { resolveModelId } from './models';

export interface SubmitOptions {
  template: string;
  model?: string;
  prompt: string;
  negative?: string;
  width?: number;
  height?: number;
  steps?: number;
  cfg?: number;
  seed?: number;
  scheduler?: string;
  strength?: number;
  batchCount?: number;
  initImage?: string;
  mask?: string;
  upscale?: string;
  safety?: string;
  priority?: string;
  session?: string;
  key?: string;
  deadline?: number;
  /** `--lora path[:weight]`, repeatable. */
  lora?: processingV1.SessionDefaults['loras'];
  /** `--controlnet model:image[:scale]`, repeatable; the images are sent inline. */
  controlnet?: ControlNetOption[];
  /** `--seeds 1,2,3`: one job per seed, as one batch. */
  seeds?: string[];
  /** `--repeat n`: each combination n times (seeds count up), as one batch. */
  repeat?: number;
}

export interface ControlNetOption {
  model: string;
  image: string;
  scale?: number;
}

function splitLast(value: string): [string, number | undefined] {
  const at = value.lastIndexOf(':');
  const tail = at >= 0 ? value.slice(at + 1) : '';
  const n = tail === '' ? NaN : Number(tail);
  return Number.isFinite(n) ? [value.slice(0, at), n] : [value, undefined];
}

/** `--lora path[:weight]` (commander's collector): throws InvalidArgumentError on an empty path. */
export function parseLora(value: string, previous: processingV1.SessionDefaults['loras'] = []) {
  const [path, weight] = splitLast(value);
  if (!path) throw new InvalidArgumentError('expected <path>[:<weight>], e.g. lora-a.safetensors:0.8');
  return [...previous, { path, weight }];
}

/** `--controlnet model:image[:scale]` (commander's collector); the image is a local file. */
export function parseControlNet(value: string, previous: ControlNetOption[] = []): ControlNetOption[] {
  const [rest, scale] = splitLast(value);
  const at = rest.indexOf(':');
  const [model, image] = at > 0 ? [rest.slice(0, at), rest.slice(at + 1)] : ['', ''];
  if (!model || !image)
    throw new InvalidArgumentError(
      'expected <model>:<image file>[:<scale>], e.g. controlnet-canny:edges.png:0.8',
    );
  return [...previous, { model, image, scale }];
}

/** `--seeds 1,2,3`: throws InvalidArgumentError unless every item is a non-negative integer. */
export function parseSeeds(value: string): string[] {
  const seeds = value.split(',').map((s) => s.trim());
  if (seeds.length === 0 || !seeds.every((s) => /^\d+$/.test(s)))
    throw new InvalidArgumentError('expected comma-separated non-negative integers, e.g. 1,2,3');
  return seeds;
}

function image(file: string | undefined): processingV1.InputImage | undefined {
  return file === undefined ? undefined : { data: fs.readFileSync(file), path: '' };
}

/** The SubmitJobRequest for the options; resolves a model path to its registry id. */
export async function submitRequest(
  clients: Clients,
  o: SubmitOptions,
): Promise<processingV1.SubmitJobRequest> {
  const params = inferenceV1.GenerationParams.fromPartial({
    modelId: o.model ? await resolveModelId(clients, o.model) : '',
    prompt: o.prompt,
    negativePrompt: o.negative ?? '',
    width: o.width,
    height: o.height,
    steps: o.steps,
    cfgScale: o.cfg,
    seed: o.seed,
    scheduler: o.scheduler ?? '',
    strength: o.strength,
    batchCount: o.batchCount ?? 0,
    loras: o.lora ?? [],
    controlnets: (o.controlnet ?? []).map((c) => ({ path: c.model, image: '', conditioningScale: c.scale })),
  });
  return processingV1.SubmitJobRequest.fromPartial({
    idempotencyKey: o.key ?? '',
    sessionId: o.session ?? '',
    priority: o.priority ? (`PRIORITY_${o.priority.toUpperCase()}` as processingV1.Priority) : undefined,
    deadlineSeconds: o.deadline ?? 0,
    spec: {
      template: o.template,
      params,
      initImage: image(o.initImage),
      mask: image(o.mask),
      upscale: o.upscale ? { modelPath: o.upscale } : undefined,
      controlnetImages: (o.controlnet ?? []).map((c) => image(c.image)!),
      safety: o.safety ? (`SAFETY_POLICY_${o.safety.toUpperCase()}` as commonV1.SafetyPolicy) : undefined,
    },
  });
}

/** True when the options ask for several jobs (`--seeds`, `--repeat`): submitted as one batch. */
export function isBatch(o: SubmitOptions): boolean {
  return (o.seeds?.length ?? 0) > 0 || (o.repeat ?? 0) > 1;
}

/** `dops submit --seeds/--repeat`: queues the jobs as one batch; returns its job ids. */
export async function submitBatchCommand(clients: Clients, out: Output, o: SubmitOptions): Promise<string[]> {
  const single = await submitRequest(clients, { ...o, seed: o.seeds?.length ? undefined : o.seed });
  const { batch, created } = await call(
    clients.processing.submitBatch,
    processingV1.SubmitBatchRequest.fromPartial({
      ...single,
      expansion: {
        cartesian: o.seeds?.length ? [{ field: 'seed', values: o.seeds }] : [],
        repeat: o.repeat ?? 0,
      },
    }),
  );
  out.note(
    created
      ? `submitted batch ${batch!.id}: ${batch!.jobIds.join(' ')}`
      : `idempotency key matched the existing batch ${batch!.id}`,
  );
  return batch!.jobIds;
}

/** `dops submit`: queues one job and prints its id at once. */
export async function submitCommand(
  clients: Clients,
  out: Output,
  o: SubmitOptions,
): Promise<processingV1.Job> {
  const { job, created } = await call(clients.processing.submitJob, await submitRequest(clients, o));
  out.note(created ? `submitted ${job!.id}` : `idempotency key matched the existing job ${job!.id}`);
  return job!;
}
