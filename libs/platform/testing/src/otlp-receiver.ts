import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** One span as a receiver got it. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** `service.name` of the resource that sent it. */
  service: string;
  attributes: Record<string, unknown>;
  events: { name: string; attributes: Record<string, unknown> }[];
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>`: the endpoint to configure (OTLP/HTTP, protobuf or JSON). */
  readonly endpoint: string;
  /** Every span received so far. */
  spans(): ReceivedSpan[];
  close(): Promise<void>;
}

// The generated protobuf root of @opentelemetry/otlp-transformer (0.208.0): the OTLP messages
// themselves, so the receiver decodes exactly what a collector would.
interface ProtoRoot {
  opentelemetry: {
    proto: {
      collector: { trace: { v1: { ExportTraceServiceRequest: { decode(b: Uint8Array): unknown } } } };
    };
  };
}
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root') as ProtoRoot;
const ExportTraceServiceRequest = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

interface KeyValue {
  key: string;
  value?: Record<string, unknown>;
}
interface OtlpSpan {
  traceId: Uint8Array | string;
  spanId: Uint8Array | string;
  parentSpanId?: Uint8Array | string;
  name: string;
  attributes?: KeyValue[];
  events?: { name: string; attributes?: KeyValue[] }[];
}
interface ExportRequest {
  resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}

/**
 * An in-process OTLP/HTTP trace receiver on 127.0.0.1 (a free port) for tests: accepts
 * `POST /v1/traces` with protobuf or JSON bodies (gzip too), answers 200, keeps the spans.
 * Rejects when it cannot listen.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const received: ReceivedSpan[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        const json = String(req.headers['content-type'] ?? '').includes('json');
        const message = (
          json ? JSON.parse(body.toString('utf8')) : ExportTraceServiceRequest.decode(body)
        ) as ExportRequest;
        received.push(...spansOf(message));
        res
          .writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' })
          .end(json ? '{}' : '');
      } catch (err) {
        res.writeHead(400).end(String(err));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans: () => [...received],
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function spansOf(message: ExportRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of message.resourceSpans ?? []) {
    const service = String(attributesOf(rs.resource?.attributes)['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? [])
      for (const span of ss.spans ?? [])
        out.push({
          traceId: hex(span.traceId),
          spanId: hex(span.spanId),
          parentSpanId: span.parentSpanId ? hex(span.parentSpanId) : '',
          name: span.name,
          service,
          attributes: attributesOf(span.attributes),
          events: (span.events ?? []).map((e) => ({ name: e.name, attributes: attributesOf(e.attributes) })),
        });
  }
  return out;
}

/** Protobuf ids are bytes; OTLP/JSON ids are hex already. */
function hex(id: Uint8Array | string): string {
  return typeof id === 'string' ? id.toLowerCase() : Buffer.from(id).toString('hex');
}

function attributesOf(list: KeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) {
    if (!value) continue;
    const v = value['stringValue'] ?? value['intValue'] ?? value['doubleValue'] ?? value['boolValue'];
    out[key] =
      typeof v === 'object' && v !== null && 'toNumber' in v ? (v as { toNumber(): number }).toNumber() : v;
  }
  return out;
}
