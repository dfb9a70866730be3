import * as fs from 'node:fs';
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
      safety: o.safety ? (`SAFETY_POLICY_${o.safety.toUpperCase()}` as commonV1.SafetyPolicy) : undefined,
    },
  });
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
