import type { Telemetry } from 'bullmq';
import { BullMQOtel } from 'bullmq-otel';

let shared: Telemetry | undefined;

/**
 * BullMQ's OpenTelemetry integration (bullmq-otel) for the `telemetry` option of every Queue,
 * Worker and FlowProducer of dops: a flow's stages and the workers that run them join the trace
 * of the call that added it. Spans go wherever the process's tracer provider sends them
 * (`startTelemetry`). Throws nothing.
 */
export function queueTelemetry(): Telemetry {
  shared ??= new BullMQOtel({ tracerName: 'dops' });
  return shared;
}
