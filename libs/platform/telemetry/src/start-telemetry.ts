import { diag } from '@opentelemetry/api';
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  BatchSpanProcessor,
  NoopSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';

/** OTLP transports: gRPC, or HTTP with protobuf or JSON bodies. */
export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';

export interface TelemetryOptions {
  /** `service.name` resource attribute, e.g. `dops-device`. */
  serviceName: string;
  /**
   * OTLP collector, e.g. `http://otel-collector:4317` (grpc) or `http://otel-collector:4318`
   * (http/*: `/v1/traces` is appended when the URL has no path). Unset: spans are made (ids in
   * logs, context propagated) but not exported.
   */
  otlpEndpoint?: string;
  /** Default `grpc`. */
  otlpProtocol?: OtlpProtocol;
}

export interface Telemetry {
  /** Flushes pending spans and stops the SDK; resolves even when the exporter fails. */
  shutdown(): Promise<void>;
}

// Health probes and reflection would drown the real calls; OTLP's own Export must not trace itself.
const UNTRACED_METHODS = ['Check', 'Watch', 'ServerReflectionInfo', 'Export'];

let started: Telemetry | undefined;

/**
 * Starts the OpenTelemetry Node SDK with gRPC auto-instrumentation. Must run before anything
 * requires `@grpc/grpc-js` (see README: an app's `register.ts` is the first import of `main.ts`).
 * Idempotent: a second call returns the first handle. Throws nothing; `OTEL_SDK_DISABLED=true`
 * turns it into a no-op, as the SDK documents.
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  if (started) {
    diag.warn('startTelemetry called twice; keeping the first SDK');
    return started;
  }
  const spanProcessor: SpanProcessor = options.otlpEndpoint
    ? new BatchSpanProcessor(otlpExporter(options.otlpEndpoint, options.otlpProtocol ?? 'grpc'))
    : // A processor that drops spans still makes the SDK register a real tracer provider, so
      // trace ids exist for logs and for the traceparent handed to workers and queue jobs.
      new NoopSpanProcessor();
  const sdk = new NodeSDK({
    serviceName: options.serviceName,
    spanProcessors: [spanProcessor],
    // Explicitly empty, or the SDK starts an OTLP log exporter towards localhost by default.
    logRecordProcessors: [],
    instrumentations: [new GrpcInstrumentation({ ignoreGrpcMethods: UNTRACED_METHODS })],
  });
  sdk.start();
  const handle: Telemetry = {
    shutdown: async () => {
      try {
        await sdk.shutdown();
      } catch (err) {
        diag.error('telemetry shutdown failed', err);
      } finally {
        if (started === handle) started = undefined;
      }
    },
  };
  started = handle;
  return handle;
}

/** The span exporter of `protocol` towards `endpoint`. */
function otlpExporter(endpoint: string, protocol: OtlpProtocol): SpanExporter {
  if (protocol === 'grpc') return new GrpcTraceExporter({ url: endpoint });
  const url = otlpHttpTracesUrl(endpoint);
  return protocol === 'http/json' ? new JsonTraceExporter({ url }) : new ProtoTraceExporter({ url });
}

/**
 * The traces URL of an OTLP/HTTP endpoint: `<endpoint>/v1/traces` when it has no path, else the
 * endpoint as given (the same rule the workers apply). Throws TypeError for a malformed URL.
 */
function otlpHttpTracesUrl(endpoint: string): string {
  const u = new URL(endpoint);
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/v1/traces';
  return u.toString();
}
