import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { commonV1 } from '@dops/proto';
import {
  DopsError,
  ECHO_LIMIT,
  truncateEcho,
  ERROR_CODES,
  fromGrpcError,
  fromProtoErrorCode,
  fromWorkerError,
  toGrpcStatus,
  toProtoErrorCode,
} from './index';

function asServiceError(s: ReturnType<typeof toGrpcStatus>): ServiceError {
  return Object.assign(new Error(String(s.details)), {
    code: s.code!,
    details: s.details!,
    metadata: s.metadata!,
  }) as ServiceError;
}

describe('error codes', () => {
  it('mirror every value of dops.common.v1.ErrorCode except UNSPECIFIED', () => {
    const proto = Object.values(commonV1.ErrorCode)
      .filter((v) => v !== commonV1.ErrorCode.UNSPECIFIED && v !== commonV1.ErrorCode.UNRECOGNIZED)
      .map((v) => fromProtoErrorCode(v));
    expect([...proto].sort()).toEqual([...ERROR_CODES].sort());
    for (const c of ERROR_CODES) expect(fromProtoErrorCode(toProtoErrorCode(c))).toBe(c);
  });
});

describe('gRPC status round trip', () => {
  it('carries code, retryable flag and field violations in grpc-status-details-bin', () => {
    const s = toGrpcStatus(DopsError.invalidArgument('device_id', 'must not be empty'));
    expect(s.code).toBe(status.INVALID_ARGUMENT);
    expect(s.metadata!.get('grpc-status-details-bin')[0]).toBeInstanceOf(Buffer);
    const back = fromGrpcError(asServiceError(s));
    expect(back.code).toBe('INVALID_ARGUMENT');
    expect(back.retryable).toBe(false);
    expect(back.violations).toEqual([{ field: 'device_id', description: 'must not be empty' }]);
  });

  it('maps OUT_OF_MEMORY to RESOURCE_EXHAUSTED on the wire but keeps the string code', () => {
    const s = toGrpcStatus(new DopsError('OUT_OF_MEMORY', 'vram', { retryAfterMs: 1500 }));
    expect(s.code).toBe(status.RESOURCE_EXHAUSTED);
    const back = fromGrpcError(asServiceError(s));
    expect(back.code).toBe('OUT_OF_MEMORY');
    expect(back.retryable).toBe(true);
    expect(back.retryAfterMs).toBe(1500);
  });

  it('turns a plain Error into INTERNAL, not retryable', () => {
    const s = toGrpcStatus(new Error('boom'));
    expect(s.code).toBe(status.INTERNAL);
    expect(fromGrpcError(asServiceError(s)).retryable).toBe(false);
  });

  it('maps a bare status from a foreign peer by its code', () => {
    const err = Object.assign(new Error('x'), {
      code: status.UNAVAILABLE,
      details: 'down',
      metadata: new Metadata(),
    });
    const back = fromGrpcError(err as ServiceError);
    expect(back.code).toBe('UNAVAILABLE');
    expect(back.retryable).toBe(true);
  });
});

describe('worker errors', () => {
  it('turns data.details.field into a violation and keeps fatal in metadata', () => {
    const e = fromWorkerError({
      message: 'steps out of range',
      data: {
        code: 'INVALID_ARGUMENT',
        retryable: false,
        fatal: true,
        details: { field: 'steps', reason: 'must be 1..150' },
      },
    });
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.violations).toEqual([{ field: 'steps', description: 'must be 1..150' }]);
    expect(e.metadata['fatal']).toBe('true');
  });

  it('treats an unknown code as INTERNAL', () => {
    expect(fromWorkerError({ message: 'x', data: { code: 'WHAT' } }).code).toBe('INTERNAL');
  });
});

describe('echoed strings are bounded', () => {
  it('cuts a 1 MiB id in the message, ErrorInfo metadata and BadRequest of the status', () => {
    const huge = 'x'.repeat(1024 * 1024);
    const status = toGrpcStatus(
      new DopsError('NOT_FOUND', `job '${huge}' not found`, {
        metadata: { job: huge },
        violations: [{ field: 'job_id', description: huge }],
      }),
    );
    const bin = status.metadata!.get('grpc-status-details-bin')[0] as Buffer;
    expect(bin.length).toBeLessThan(4 * ECHO_LIMIT);
    expect(Buffer.byteLength(status.details!)).toBeLessThan(ECHO_LIMIT + 32);
    const decoded = fromGrpcError({ ...status, message: '', name: 'Error' } as never);
    expect(decoded.metadata['job']!.length).toBeLessThan(ECHO_LIMIT + 32);
    expect(decoded.violations[0]!.description).toMatch(/…\(\+\d+ bytes\)$/);
  });

  it('never splits a multi-byte character', () => {
    const cut = truncateEcho('é'.repeat(400), 301);
    expect(cut.startsWith('é'.repeat(150) + '…')).toBe(true);
  });
});
