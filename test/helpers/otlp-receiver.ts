import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/**
 * The official OTLP definitions (test/fixtures/otlp/, copied from open-telemetry/opentelemetry-proto),
 * so that what the exporter sends as http/protobuf is decoded by a real protobuf decoder.
 */
const PROTO_ROOT = fileURLToPath(new URL('../fixtures/otlp/', import.meta.url));
const REQUEST_TYPE = 'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest';

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly resource: Readonly<Record<string, unknown>>;
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>`: OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  readonly endpoint: string;
  /** Every span received, from every export request. */
  readonly spans: ReceivedSpan[];
  /** Each export request decoded whole (JSON.parse or protobuf toObject), for sweeps over every value. */
  readonly requests: unknown[];
  /** The content types the exporter sent with. */
  readonly contentTypes: Set<string>;
  /** How many export requests arrived, answered or not. */
  received(): number;
  close(): Promise<void>;
}

/**
 * An OTLP/HTTP trace receiver on a free loopback port, as an OpenTelemetry Collector's `otlp`
 * receiver takes them: POST /v1/traces with an ExportTraceServiceRequest as JSON
 * (application/json) or protobuf (application/x-protobuf). `hang`: it reads each request and never
 * answers, as a receiver stuck behind a full queue.
 */
export async function startOtlpReceiver(options: { hang?: boolean } = {}): Promise<OtlpReceiver> {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => `${PROTO_ROOT}${target}`;
  await root.load('opentelemetry/proto/collector/trace/v1/trace_service.proto', { keepCase: false });
  const requestType = root.lookupType(REQUEST_TYPE);
  const spans: ReceivedSpan[] = [];
  const requests: unknown[] = [];
  const contentTypes = new Set<string>();
  const hanging: ServerResponse[] = [];
  let received = 0;

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received += 1;
      if (options.hang) {
        hanging.push(res);
        return;
      }
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      contentTypes.add(type);
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const body = Buffer.concat(chunks);
      let decoded: unknown;
      if (type === 'application/json') {
        decoded = JSON.parse(body.toString('utf8'));
      } else if (type === 'application/x-protobuf') {
        // Ids as hex, as OTLP/JSON writes them, so both protocols read alike.
        decoded = requestType.toObject(requestType.decode(body), { longs: String, enums: Number, bytes: String, defaults: false });
        decoded = hexIds(decoded);
      } else {
        res.writeHead(415).end();
        return;
      }
      requests.push(decoded);
      spans.push(...flatten(decoded));
      if (type === 'application/json') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(); // an empty ExportTraceServiceResponse
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    requests,
    contentTypes,
    received: () => received,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** protobufjs writes bytes as base64; OTLP/JSON writes trace and span ids as hex. */
function hexIds(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(hexIds);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [
      key,
      (key === 'traceId' || key === 'spanId' || key === 'parentSpanId') && typeof inner === 'string'
        ? Buffer.from(inner, 'base64').toString('hex')
        : hexIds(inner),
    ]),
  );
}

interface KeyValue {
  readonly key: string;
  readonly value?: Record<string, unknown>;
}

/** An OTLP AnyValue as a plain value. */
function plain(value: Record<string, unknown> | undefined): unknown {
  if (value === undefined) return undefined;
  if ('stringValue' in value) return value['stringValue'];
  if ('boolValue' in value) return value['boolValue'];
  if ('intValue' in value) return Number(value['intValue']);
  if ('doubleValue' in value) return value['doubleValue'];
  if ('arrayValue' in value) return ((value['arrayValue'] as { values?: Record<string, unknown>[] }).values ?? []).map(plain);
  if ('kvlistValue' in value) return attributes((value['kvlistValue'] as { values?: KeyValue[] }).values);
  return value;
}

function attributes(list: readonly KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, plain(value)]));
}

function flatten(request: unknown): ReceivedSpan[] {
  const found: ReceivedSpan[] = [];
  type Spans = { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: Record<string, unknown>[] }[] };
  for (const resourceSpans of (request as { resourceSpans?: Spans[] }).resourceSpans ?? []) {
    const resource = attributes(resourceSpans.resource?.attributes);
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        found.push({
          traceId: String(span['traceId'] ?? ''),
          spanId: String(span['spanId'] ?? ''),
          parentSpanId: String(span['parentSpanId'] ?? ''),
          name: String(span['name'] ?? ''),
          kind: Number(span['kind'] ?? 0),
          attributes: attributes(span['attributes'] as KeyValue[] | undefined),
          resource,
        });
      }
    }
  }
  return found;
}

/** Every string anywhere in `value`: names, attribute values, events, resource, status messages. */
export function everyString(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(everyString);
  if (typeof value === 'object' && value !== null) return Object.entries(value).flatMap(([key, inner]) => [key, ...everyString(inner)]);
  return [];
}
