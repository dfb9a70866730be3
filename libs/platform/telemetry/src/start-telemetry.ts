import { diag } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, NoopSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';

export interface TelemetryOptions {
  /** `service.name` resource attribute, e.g. `dops-device`. */
  serviceName: string;
  /** OTLP gRPC collector, e.g. `http://otel-collector:4317`. Unset: spans are made (ids in logs, context propagated) but not exported. */
  otlpEndpoint?: string;
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
    ? new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlpEndpoint }))
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
