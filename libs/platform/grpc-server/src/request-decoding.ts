import { readFileSync } from 'node:fs';
import {
  ScalarType,
  createFileRegistry,
  fromBinary,
  type DescMessage,
  type Registry,
} from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { DopsError, type FieldViolation } from '@dops/errors';
import { DESCRIPTOR_SET_PATH } from '@dops/proto';

const INT64 = new Set([
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.SINT64,
  ScalarType.FIXED64,
  ScalarType.SFIXED64,
]);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

/** What a request decoder hands on when the bytes did not decode: the handler then answers with `error`. */
export class UndecodableRequest {
  constructor(readonly error: DopsError) {}
}

let registry: Registry | undefined;
function registryOf(): Registry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR_SET_PATH)));
  return registry;
}

/**
 * The service definition with each method's request decoder made safe: ts-proto's decoder (64-bit
 * integers as JavaScript numbers) throws for a value beyond 2^53, and grpc-js would answer
 * INTERNAL. The wrapped decoder yields an UndecodableRequest instead, whose error is
 * INVALID_ARGUMENT naming every such field by its path (`spec.params.seed`), or saying the
 * bytes are not a valid message at all.
 */
export function withSafeDecoding<D extends ServiceDefinition>(definition: D): D {
  const wrapped: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(
    definition as Record<string, MethodDefinition<unknown, unknown>>,
  )) {
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch {
          return new UndecodableRequest(decodeFailure(method.path, bytes));
        }
      },
    };
  }
  return wrapped as unknown as D;
}

/** The INVALID_ARGUMENT for request bytes of method `path` (`/pkg.Service/Method`) that ts-proto could not decode. */
export function decodeFailure(path: string, bytes: Buffer): DopsError {
  const [, serviceName, methodName] = /^\/([^/]+)\/([^/]+)$/.exec(path) ?? [];
  try {
    const service = registryOf().getService(serviceName ?? '');
    const input = service?.methods.find((m) => m.name === methodName)?.input;
    if (input) {
      const violations: FieldViolation[] = [];
      unsafeIntegers(input, fromBinary(input, bytes) as unknown as Record<string, unknown>, '', violations);
      const error = DopsError.fromViolations(violations);
      if (error) return error;
    }
  } catch {
    // not a valid message at all
  }
  return DopsError.invalidArgument('request', 'is not a valid protobuf message of this method');
}

function unsafeIntegers(
  desc: DescMessage,
  message: Record<string, unknown>,
  prefix: string,
  out: FieldViolation[],
): void {
  for (const field of desc.fields) {
    const name = `${prefix}${field.name}`;
    const value = field.oneof
      ? oneofValue(message, field.oneof.localName, field.localName)
      : message[field.localName];
    if (value === undefined) continue;
    if (field.fieldKind === 'scalar' && INT64.has(field.scalar)) check(value, name, out);
    else if (field.fieldKind === 'list' && field.listKind === 'scalar' && INT64.has(field.scalar))
      (value as unknown[]).forEach((v, i) => check(v, `${name}[${i}]`, out));
    else if (field.fieldKind === 'message')
      unsafeIntegers(field.message, value as Record<string, unknown>, `${name}.`, out);
    else if (field.fieldKind === 'list' && field.listKind === 'message')
      (value as Record<string, unknown>[]).forEach((v, i) =>
        unsafeIntegers(field.message, v, `${name}[${i}].`, out),
      );
  }
}

function oneofValue(message: Record<string, unknown>, oneof: string, field: string): unknown {
  const group = message[oneof] as { case?: string; value?: unknown } | undefined;
  return group?.case === field ? group.value : undefined;
}

function check(value: unknown, field: string, out: FieldViolation[]): void {
  if (typeof value === 'bigint' && (value > MAX_SAFE || value < MIN_SAFE))
    out.push({ field, description: `must be at most ${Number.MAX_SAFE_INTEGER} (2^53 - 1)` });
}
