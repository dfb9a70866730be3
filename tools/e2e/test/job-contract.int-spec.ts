// The job contract, tried as a stranger would over real processes: every malformed or unservable
// job is refused by SubmitJob with the right code and a BadRequest naming the field, before
// anything is queued or written; and the workflow stages deliver what they promise.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import type { ServiceError } from '@grpc/grpc-js';
import { DopsError, fromGrpcError } from '@dops/errors';
import { call } from '@dops/grpc-client';
import { commonV1, inferenceV1, postprocessingV1, processingV1 } from '@dops/proto';
import { waitFor } from '@dops/testing';
import { startStack, type Stack } from '../src/stack';

const MODEL_FILE = 'sd15-tiny.safetensors';
const { JobState } = processingV1;
let stack: Stack;
let MODEL = '';

function spec(over: Partial<inferenceV1.GenerationParams> = {}, extra: Partial<processingV1.JobSpec> = {}) {
  return processingV1.JobSpec.fromPartial({
    template: 'txt2img',
    safety: commonV1.SafetyPolicy.OFF,
    params: inferenceV1.GenerationParams.fromPartial({
      modelId: MODEL,
      prompt: 'a lighthouse',
      width: 64,
      height: 64,
      steps: 1,
      seed: 7,
      ...over,
    }),
    ...extra,
  });
}

/** A PNG header claiming `width`×`height` (no pixel data): enough for any header probe. */
function pngHeader(width: number, height: number): Buffer {
  const b = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  b[24] = 8;
  b[25] = 2;
  return b;
}

async function refusal(p: Promise<unknown>): Promise<DopsError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof DopsError) return err;
    throw err;
  }
  throw new Error('the call succeeded');
}

async function submit(req: Partial<processingV1.SubmitJobRequest>) {
  return call(stack.client.submitJob, processingV1.SubmitJobRequest.fromPartial(req), { deadlineMs: 15_000 });
}

async function terminal(jobId: string): Promise<processingV1.Job> {
  return waitFor(
    async () => {
      const { job } = await call(stack.client.getJob, { jobId }, { deadlineMs: 10_000 });
      return job && [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED].includes(job.state)
        ? job
        : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 250, description: `job ${jobId} terminal` },
  );
}

/** The tEXt / iTXt chunks of a PNG file. */
function pngText(file: string): Record<string, string> {
  const b = readFileSync(file);
  const out: Record<string, string> = {};
  for (let at = 8; at + 8 <= b.length; ) {
    const length = b.readUInt32BE(at);
    const type = b.toString('latin1', at + 4, at + 8);
    const data = b.subarray(at + 8, at + 8 + length);
    if (type === 'tEXt') {
      const nul = data.indexOf(0);
      out[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    } else if (type === 'iTXt') {
      const nul = data.indexOf(0);
      const key = data.toString('latin1', 0, nul);
      // keyword NUL flag method lang NUL translated NUL text (uncompressed only)
      let rest = nul + 3;
      rest = data.indexOf(0, rest) + 1;
      rest = data.indexOf(0, rest) + 1;
      out[key] = data.toString('utf8', rest);
    }
    at += 12 + length;
  }
  return out;
}

beforeAll(async () => {
  stack = await startStack({
    inferenceNodes: 1,
    postprocessing: true,
    safetyChecker: 'safety-checker-tiny-flags-all',
  });
  MODEL = await stack.modelId(MODEL_FILE);
});
afterAll(async () => {
  await stack?.stop();
});

type Case = [name: string, req: () => Partial<processingV1.SubmitJobRequest>, code: string, field: string];

const lora = (p: string, weight?: number) => ({ path: p, weight });
const cases: Case[] = [
  [
    'width above the models’ 2048',
    () => ({ spec: spec({ width: 4096 }) }),
    'INVALID_ARGUMENT',
    'spec.params.width',
  ],
  [
    'an unknown scheduler',
    () => ({ spec: spec({ scheduler: 'Heun++' }) }),
    'INVALID_ARGUMENT',
    'spec.params.scheduler',
  ],
  [
    'a prompt over 20,000 characters',
    () => ({ spec: spec({ prompt: 'x'.repeat(20_001) }) }),
    'INVALID_ARGUMENT',
    'spec.params.prompt',
  ],
  [
    '9 LoRAs',
    () => ({
      spec: spec({ loras: Array.from({ length: 9 }, () => lora('lora-kohya-sd15-tiny.safetensors')) }),
    }),
    'INVALID_ARGUMENT',
    'spec.params.loras',
  ],
  [
    '10,000 LoRAs',
    () => ({ spec: spec({ loras: Array.from({ length: 10_000 }, () => lora('l.safetensors')) }) }),
    'INVALID_ARGUMENT',
    'spec.params.loras',
  ],
  [
    'a LoRA weight NaN',
    () => ({ spec: spec({ loras: [lora('lora-kohya-sd15-tiny.safetensors', Number.NaN)] }) }),
    'INVALID_ARGUMENT',
    'spec.params.loras[0].weight',
  ],
  [
    'a LoRA weight −1e308',
    () => ({ spec: spec({ loras: [lora('lora-kohya-sd15-tiny.safetensors', -1e308)] }) }),
    'INVALID_ARGUMENT',
    'spec.params.loras[0].weight',
  ],
  [
    'a LoRA that does not exist',
    () => ({ spec: spec({ loras: [lora('no-such-lora.safetensors')] }) }),
    'NOT_FOUND',
    'spec.params.loras[0].path',
  ],
  [
    'a LoRA path that escapes the roots',
    () => ({ spec: spec({ loras: [lora('../../etc/passwd.safetensors')] }) }),
    'INVALID_ARGUMENT',
    'spec.params.loras[0].path',
  ],
  [
    'a LoRA path outside the roots',
    () => ({ spec: spec({ loras: [lora('/etc/hostname')] }) }),
    'INVALID_ARGUMENT',
    'spec.params.loras[0].path',
  ],
  [
    'a checkpoint named as a LoRA',
    () => ({ spec: spec({ loras: [lora(MODEL_FILE)] }) }),
    'INVALID_ARGUMENT',
    'spec.params.loras[0].path',
  ],
  [
    'a 30000×30000 PNG bomb',
    () => ({
      spec: spec({}, { template: 'img2img', initImage: { data: pngHeader(30_000, 30_000), path: '' } }),
    }),
    'INVALID_ARGUMENT',
    'spec.init_image.data',
  ],
  [
    'an init image path outside the input root',
    () => ({
      spec: spec({}, { template: 'img2img', initImage: { data: Buffer.alloc(0), path: '/etc/hostname' } }),
    }),
    'INVALID_ARGUMENT',
    'spec.init_image.path',
  ],
  [
    'an upscaler outside the roots',
    () => ({ spec: spec({}, { upscale: { modelPath: '/etc/hostname' } }) }),
    'INVALID_ARGUMENT',
    'spec.upscale.model_path',
  ],
  [
    'an upscale factor the upscaler does not have',
    () => ({ spec: spec({}, { upscale: { modelPath: 'upscaler-compact-2x-tiny.safetensors', scale: 4 } }) }),
    'INVALID_ARGUMENT',
    'spec.upscale.scale',
  ],
  [
    'a face size not a multiple of 32',
    () => ({
      spec: spec({}, { faceRestore: { modelPath: 'face-restoreformer-tiny.safetensors', faceSize: 100 } }),
    }),
    'INVALID_ARGUMENT',
    'spec.face_restore.face_size',
  ],
  [
    'a quality for PNG',
    () => ({ spec: spec({}, { convert: { format: postprocessingV1.ImageFormat.PNG, quality: 50 } }) }),
    'INVALID_ARGUMENT',
    'spec.convert.quality',
  ],
  ['clip_skip 13', () => ({ spec: spec({ clipSkip: 13 }) }), 'INVALID_ARGUMENT', 'spec.params.clip_skip'],
  [
    'ControlNet images that do not match the ControlNets',
    () => ({ spec: spec({}, { controlnetImages: [{ data: pngHeader(64, 64), path: '' }] }) }),
    'INVALID_ARGUMENT',
    'spec.controlnet_images',
  ],
  [
    'a model the registry does not know',
    () => ({ spec: spec({ modelId: 'feedfacefeedface' }) }),
    'NOT_FOUND',
    'spec.params.model_id',
  ],
  [
    'inpaint with a model that cannot inpaint',
    () => ({
      spec: spec(
        {},
        {
          template: 'inpaint',
          initImage: { data: pngHeader(64, 64), path: '' },
          mask: { data: pngHeader(64, 64), path: '' },
        },
      ),
    }),
    'FAILED_PRECONDITION',
    'spec.template',
  ],
  [
    'a deadline past the maximum',
    () => ({ spec: spec(), deadlineSeconds: 2_147_484 }),
    'INVALID_ARGUMENT',
    'deadline_seconds',
  ],
  ['an unknown session', () => ({ spec: spec(), sessionId: 'nope' }), 'NOT_FOUND', 'session_id'],
];

describe('SubmitJob refuses at the edge', () => {
  it.each(cases)('%s', async (_name, req, code, field) => {
    const error = await refusal(submit(req()));
    expect(`${error.code} ${error.violations.map((v) => v.field).join(',')}`).toBe(`${code} ${field}`);
  });

  it('a seed above 2^53 (raw bytes, as another client may send) is INVALID_ARGUMENT naming it, not INTERNAL', async () => {
    const key = (field: number, wire: number) => (field << 3) | wire;
    const params = new BinaryWriter()
      .uint32(key(1, 2))
      .string(MODEL)
      .uint32(key(9, 0))
      .uint64('18446744073709551615')
      .finish();
    const jobSpec = new BinaryWriter()
      .uint32(key(1, 2))
      .string('txt2img')
      .uint32(key(2, 2))
      .bytes(params)
      .finish();
    const bytes = Buffer.from(new BinaryWriter().uint32(key(4, 2)).bytes(jobSpec).finish());
    const error = await new Promise<DopsError>((resolve, reject) => {
      stack.client.makeUnaryRequest(
        '/dops.processing.v1.ProcessingService/SubmitJob',
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        (err: ServiceError | null) => (err ? resolve(fromGrpcError(err)) : reject(new Error('accepted'))),
      );
    });
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.violations.map((v) => v.field)).toEqual(['spec.params.seed']);
  });

  it('unknown batch and session ids answer NOT_FOUND naming the field', async () => {
    const batch = await refusal(call(stack.client.getBatch, { batchId: 'nope' }, { deadlineMs: 5_000 }));
    expect([batch.code, batch.violations[0]?.field]).toEqual(['NOT_FOUND', 'batch_id']);
    const session = await refusal(
      call(stack.client.getSession, { sessionId: 'nope' }, { deadlineMs: 5_000 }),
    );
    expect([session.code, session.violations[0]?.field]).toEqual(['NOT_FOUND', 'session_id']);
  });

  it('queued nothing and wrote nothing for any of them', async () => {
    const { jobs } = await call(
      stack.client.listJobs,
      processingV1.ListJobsRequest.fromPartial({ pageSize: 500 }),
      {
        deadlineMs: 5_000,
      },
    );
    expect(jobs).toHaveLength(0);
    const inputs = path.join(stack.dir, 'inputs', 'jobs');
    expect(existsSync(inputs) ? readdirSync(inputs) : []).toEqual([]);
  });
});

describe('workflow stages', () => {
  it('img2img → upscale → face restore → safety (flag) delivers one PNG that keeps and extends its metadata', async () => {
    const init = pngOf(64, 64);
    const { job } = await submit({
      spec: spec(
        { strength: 0.5, steps: 2, clipSkip: 2, prompt: 'a (lighthouse:1.3) on a cliff, '.repeat(12) },
        {
          template: 'img2img',
          initImage: { data: init, path: '' },
          upscale: { modelPath: 'upscaler-compact-2x-tiny.safetensors', scale: 2 },
          faceRestore: { modelPath: 'face-restoreformer-tiny.safetensors', faceSize: 64 },
          safety: commonV1.SafetyPolicy.FLAG,
        },
      ),
    });
    expect(job!.stages).toEqual(['generate', 'upscale', 'face_restore', 'safety']);
    const done = await terminal(job!.id);
    expect(done.error).toBeUndefined();
    expect(done.state).toBe(JobState.SUCCEEDED);
    const [image] = done.images;
    expect(image).toMatchObject({
      width: 128,
      height: 128,
      format: 'png',
      seed: 7,
      safety: commonV1.SafetyAction.FLAGGED,
    });
    const text = pngText(image!.path);
    const dops = JSON.parse(text['dops'] ?? '{}') as Record<string, unknown>;
    expect((dops['postprocessing'] as { operation: string }[]).map((p) => p.operation)).toEqual([
      'upscale',
      'faceRestore',
      'safety',
    ]);
    expect(dops['safety']).toMatchObject({ nsfw: true, action: 'flagged' });
    expect(dops['clipSkip']).toBe(2);
    expect(text['parameters']).toMatch(/Model hash: [0-9a-f]{10}/);
    expect(text['parameters']).toMatch(/Postprocess upscale by: 2/);
  });

  it('converts to WebP as the last stage, and a named input image works like an inline one', async () => {
    const named = path.join(stack.dir, 'inputs', 'named.png');
    writeFileSync(named, pngOf(64, 64));
    const { job } = await submit({
      spec: spec(
        { strength: 0.6, steps: 2 },
        {
          template: 'img2img',
          initImage: { data: Buffer.alloc(0), path: 'named.png' },
          convert: { format: postprocessingV1.ImageFormat.WEBP, quality: 70 },
        },
      ),
    });
    const done = await terminal(job!.id);
    expect(done.state).toBe(JobState.SUCCEEDED);
    expect(done.images[0]).toMatchObject({ format: 'webp', width: 64, height: 64 });
    expect(readFileSync(done.images[0]!.path).toString('latin1', 8, 12)).toBe('WEBP');
  });
});

/** A real 8-bit RGB PNG of a gradient (zlib through node). */
function pngOf(width: number, height: number): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const zlib = require('node:zlib') as typeof import('node:zlib');
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const at = y * (width * 3 + 1) + 1 + x * 3;
      raw[at] = (x * 4) & 255;
      raw[at + 1] = (y * 4) & 255;
      raw[at + 2] = 128;
    }
  const chunk = (type: string, data: Buffer) => {
    const b = Buffer.alloc(12 + data.length);
    b.writeUInt32BE(data.length, 0);
    b.write(type, 4, 'latin1');
    data.copy(b, 8);
    b.writeUInt32BE(crc32(b.subarray(4, 8 + data.length)), 8 + data.length);
    return b;
  };
  const ihdr = pngHeader(width, height).subarray(16, 29);
  return Buffer.concat([
    pngHeader(1, 1).subarray(0, 8),
    chunk('IHDR', Buffer.from(ihdr)),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(data: Buffer): number {
  let c = ~0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
