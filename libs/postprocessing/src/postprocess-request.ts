import { DopsError } from '@dops/errors';
import { commonV1, postprocessingV1 } from '@dops/proto';
import { Violations, enumName, enumValue } from '@dops/validation';

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

/** The proto enum value of a policy name (`flag` → SAFETY_POLICY_FLAG); UNSPECIFIED for any other. */
export function toProtoPolicy(policy: string): commonV1.SafetyPolicy {
  return (SAFETY_POLICIES as readonly string[]).includes(policy)
    ? (enumValue(commonV1.SafetyPolicy, policy) ?? commonV1.SafetyPolicy.UNSPECIFIED)
    : commonV1.SafetyPolicy.UNSPECIFIED;
}

/** The proto enum value of a format name (`webp` → IMAGE_FORMAT_WEBP). */
export function toProtoFormat(format: string): postprocessingV1.ImageFormat {
  return enumValue(postprocessingV1.ImageFormat, format) ?? postprocessingV1.ImageFormat.UNSPECIFIED;
}

/** The format name of a proto format; undefined for UNSPECIFIED or an unknown value. */
export function formatName(format: postprocessingV1.ImageFormat): ImageFormatName | undefined {
  return enumName(postprocessingV1.ImageFormat, format) as ImageFormatName | undefined;
}

/** The named policy for a proto policy; UNSPECIFIED = `fallback`. Throws INVALID_ARGUMENT naming `policy` (OFF included). */
export function policyOf(policy: commonV1.SafetyPolicy, fallback: SafetyPolicyName): SafetyPolicyName {
  if (policy === commonV1.SafetyPolicy.UNSPECIFIED) return fallback;
  const name = enumName(commonV1.SafetyPolicy, policy) as SafetyPolicyName | undefined;
  if (!name || !SAFETY_POLICIES.includes(name))
    throw DopsError.invalidArgument('policy', 'must be SAFETY_POLICY_FLAG, _BLUR or _BLOCK');
  return name;
}

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
