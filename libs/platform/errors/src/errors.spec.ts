import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { commonV1 } from '@dops/proto';
import {
  DopsError,
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
