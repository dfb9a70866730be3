import { securitySettings } from '@dops/security';
import { z } from 'zod';

/** Log levels pino knows, plus `silent`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The compute backends of DESIGN §4; `auto` lets the worker pick the best one present. */
export const BACKENDS = ['auto', 'cuda', 'rocm', 'directml', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

const ms = (fallback: number) => z.int().min(0).default(fallback);

/** OTLP transports a service and its workers can export spans with. */
export const OTLP_PROTOCOLS = ['grpc', 'http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];

/**
 * Settings every dops service has. Extend it: `baseServiceConfig.extend({ device: z.object({...}) })`.
 * Environment names follow the rule in env-name.ts (DOPS_GRPC_PORT, DOPS_WORKER_HANDSHAKE_TIMEOUT_MS),
 * except the backend, which is DOPS_BACKEND as DESIGN §4 names it.
 */
export const baseServiceConfig = z.object({
  grpc: z.object({
    /** Interface to bind. Default `0.0.0.0`. */
    host: z.string().min(1).default('0.0.0.0'),
    /** TCP port; 0 asks the OS for a free one (tests). Default 50051. */
    port: z.int().min(0).max(65535).default(50051),
    /**
     * Plaintext port that serves grpc.health.v1 and nothing else, for probes that cannot speak
     * TLS (Kubernetes' gRPC probes); unset = none. DOPS_GRPC_HEALTH_PORT.
     */
    healthPort: z.int().min(0).max(65535).optional(),
  }),
  /** TLS files and the token file (DOPS_SECURITY_CA_FILE, _CERT_FILE, _KEY_FILE, _TOKENS_FILE); required: there is no plaintext mode. */
  security: securitySettings,
  /** How long a graceful shutdown waits for in-flight calls before cancelling them. Default 10 s. */
  shutdownGraceMs: ms(10_000),
  /** Default `info`. */
  logLevel: z.enum(LOG_LEVELS).default('info'),
  telemetry: z.object({
    /**
     * OTLP endpoint, the one setting that turns span export on for the service and its workers
     * (e.g. `http://otel-collector:4317` for grpc, `http://otel-collector:4318` for http/*; the
     * http protocols append `/v1/traces` unless the URL already has a path). Unset = not exported.
     */
    otlpEndpoint: z.url().optional(),
    /** OTLP transport: `grpc`, `http/protobuf` or `http/json`. Default `grpc`. */
    otlpProtocol: z.enum(OTLP_PROTOCOLS).default('grpc'),
    /** `service.name` of spans and logs; each service sets its own default through defineConfig's `defaults`. */
    serviceName: z.string().min(1),
  }),
  /**
   * Prometheus endpoint (`GET /metrics`, plaintext HTTP: counts and timings only, no job data).
   * DOPS_METRICS_ENABLED, DOPS_METRICS_HOST, DOPS_METRICS_PORT; each service sets its own default
   * port (device 9451, memory 9452, model 9453, inference 9454, processing 9455, postprocessing 9456).
   */
  metrics: z
    .object({
      /** Serve /metrics. Default true. */
      enabled: z.boolean().default(true),
      /** Interface to bind. Default `127.0.0.1`: plaintext and unauthenticated, so a deployment opens it on purpose. */
      host: z.string().min(1).default('127.0.0.1'),
      /** TCP port; 0 asks the OS for a free one (tests). Default: the service's (see above). */
      port: z.int().min(0).max(65535).default(9450),
    })
    .prefault({}),
  worker: z.object({
    /** Python interpreter that runs `python -m dops_worker`. Default: DOPS_PYTHON, then the repository's .venv, then python3. */
    python: z.string().min(1).optional(),
    /**
     * Let this node's workers load pickle weights (.ckpt/.pt/.pth/.bin; still torch.load(weights_only=True)).
     * A node setting, never a request field; the worker logs it loudly at start. Default false.
     */
    allowUnsafePickle: z.boolean().default(false).meta({ env: 'DOPS_ALLOW_UNSAFE_PICKLE' }),
    /** Default `auto`. */
    backend: z.enum(BACKENDS).default('auto').meta({ env: 'DOPS_BACKEND' }),
    /** Bound on spawn → `initialize` reply. Default 60 s (first CUDA init is slow). */
    handshakeTimeoutMs: ms(60_000),
    /** Heartbeat period. Default 5 s. */
    heartbeatIntervalMs: ms(5_000),
    /** A worker silent for this long is restarted. Default 20 s. */
    heartbeatTimeoutMs: ms(20_000),
    /** Restarts allowed within `restartWindowMs` before the worker counts as crash-looping. Default 5. */
    maxRestarts: z.int().min(0).default(5),
    /** Default 60 s. */
    restartWindowMs: ms(60_000),
    /** Graceful stop (`worker.shutdown` → SIGTERM) before SIGKILL. Default 10 s. */
    stopTimeoutMs: ms(10_000),
  }),
});

export type BaseServiceConfig = z.output<typeof baseServiceConfig>;
