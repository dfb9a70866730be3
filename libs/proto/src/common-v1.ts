// dops.common.v1 spans several files; one namespace holds them all.
export * from './generated/dops/common/v1/errors';
export * from './generated/dops/common/v1/artifact';
export * from './generated/dops/common/v1/safety';
export * from './generated/dops/common/v1/job_error';
