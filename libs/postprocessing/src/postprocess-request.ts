import { DopsError } from '@dops/errors';
import { postprocessingV1 } from '@dops/proto';
import { Violations } from '@dops/validation';

export { Violations };

export type Operation = 'upscale' | 'faceRestore' | 'safety' | 'convert';
export type SafetyPolicyName = 'flag' | 'blur' | 'block';
export type ImageFormatName = 'png' | 'jpeg' | 'webp';

export const SAFETY_POLICIES: readonly SafetyPolicyName[] = ['flag', 'blur', 'block'];
export const IMAGE_FORMATS: readonly ImageFormatName[] = ['png', 'jpeg', 'webp'];

/** Where request paths may point. */
export interface PostprocessRoots {
  /** Images a client hands in. */
  inputRoot: string;
  /** Where outputs are written; also readable, so one stage's output is the next one's input. */
  artifactRoot: string;
  /** Upscalers, face restorers and safety checkers; relative model paths resolve against the first. */
  modelRoots: readonly string[];
}

/** `postprocess.run` params as the worker takes them (camelCase JSON, python postprocessing/request.py). */
export type WorkerPostprocessParams = Record<string, unknown> & {
  operation: Operation;
  image: string;
  outputDir: string;
};

const POLICY_NAMES: Partial<Record<postprocessingV1.SafetyPolicy, SafetyPolicyName>> = {
  [postprocessingV1.SafetyPolicy.FLAG]: 'flag',
  [postprocessingV1.SafetyPolicy.BLUR]: 'blur',
  [postprocessingV1.SafetyPolicy.BLOCK]: 'block',
};
const FORMAT_NAMES: Partial<Record<postprocessingV1.ImageFormat, ImageFormatName>> = {
  [postprocessingV1.ImageFormat.PNG]: 'png',
  [postprocessingV1.ImageFormat.JPEG]: 'jpeg',
  [postprocessingV1.ImageFormat.WEBP]: 'webp',
};

/** The proto enum value of a policy name. */
export function toProtoPolicy(policy: string): postprocessingV1.SafetyPolicy {
  const entry = Object.entries(POLICY_NAMES).find(([, name]) => name === policy);
  return entry ? (entry[0] as postprocessingV1.SafetyPolicy) : postprocessingV1.SafetyPolicy.UNSPECIFIED;
}

/** The proto enum value of a format name. */
export function toProtoFormat(format: string): postprocessingV1.ImageFormat {
  const entry = Object.entries(FORMAT_NAMES).find(([, name]) => name === format);
  return entry ? (entry[0] as postprocessingV1.ImageFormat) : postprocessingV1.ImageFormat.UNSPECIFIED;
}

/** The named policy for a proto policy; UNSPECIFIED = `fallback`. Throws INVALID_ARGUMENT naming `policy`. */
export function policyOf(
  policy: postprocessingV1.SafetyPolicy,
  fallback: SafetyPolicyName,
): SafetyPolicyName {
  if (policy === postprocessingV1.SafetyPolicy.UNSPECIFIED) return fallback;
  const name = POLICY_NAMES[policy];
  if (!name) throw DopsError.invalidArgument('policy', 'must be SAFETY_POLICY_FLAG, _BLUR or _BLOCK');
  return name;
}

/** Collects every bad field of a request, then throws them together (INVALID_ARGUMENT). */
/**
 * The request's image (inside the input or artifact root) and output folder, common to every
 * operation; records a violation naming `image` when it is empty or outside both roots.
 */
export function imageParams(
  operation: Operation,
  image: string,
  roots: PostprocessRoots,
  outputDir: string,
  v: Violations,
): WorkerPostprocessParams {
  return {
    operation,
    image: v.confined(image, [roots.inputRoot, roots.artifactRoot], 'image', 'the input or artifact root'),
    outputDir,
  };
}

/** Drops undefined values (the worker applies its defaults to absent fields). */
export function defined(params: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(params).filter(([, value]) => value !== undefined));
}

/** A worker field (camelCase, python postprocessing/request.py) as the proto field (`modelPath` → `model_path`). */
export function protoFieldOf(workerField: string): string {
  return workerField.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The worker's DopsError with its field violations renamed to proto fields; other errors unchanged. */
export function withProtoFields(err: unknown): unknown {
  if (!(err instanceof DopsError) || err.violations.length === 0) return err;
  const [first] = err.violations;
  const message =
    first && err.message.startsWith(`${first.field}:`)
      ? `${protoFieldOf(first.field)}${err.message.slice(first.field.length)}`
      : err.message;
  return new DopsError(err.code, message, {
    retryable: err.retryable,
    violations: err.violations.map((violation) => ({ ...violation, field: protoFieldOf(violation.field) })),
    metadata: err.metadata,
    retryAfterMs: err.retryAfterMs,
    cause: err,
  });
}

export { FORMAT_NAMES };
