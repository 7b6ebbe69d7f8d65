import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { Ajv2020 as Ajv, ValidateFunction } from 'ajv/dist/2020.js';
import type { Express } from 'express';
import { expect } from 'vitest';
import { noteExchangeSecrets } from './secrets.js';

/**
 * Response validation against openapi.yaml, so the description cannot drift from the code.
 *
 * `recordResponses` wraps a test's Tessera app (test/helpers/service.ts does it for every service it
 * starts) and records every response it sends. test/openapi.setup.ts checks what was recorded after
 * each test (so the test that produced a bad response is the one that fails) and after each file.
 * A response must match an operation and a status the document lists; its headers must include
 * every header marked `required` and match the schema of each documented header present; its body
 * must have a documented media type and match that schema, or be empty where no content is
 * documented. Schemas are JSON Schema 2020-12 (OpenAPI 3.1), checked with Ajv's 2020 dialect.
 *
 * Rules that are not the document's own, each from HTTP or from the document's introduction:
 * - HEAD is GET without a body (RFC 9110 §9.3.2): status and headers are checked against GET.
 * - A method a path does not list is checked against the `405` response its operations document
 *   (or their `404`, for a path that exists only with some configuration).
 * - A path the document does not list is checked against `components.responses.UnknownPath` (404)
 *   or, for a CORS preflight, `components.responses.CorsPreflight` (204).
 */

const SPEC_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

/**
 * Paths the document does not describe yet, each with its reason. An entry applies only while the
 * document has no such path: once it is documented, its responses are checked like any other.
 */
const UNDOCUMENTED: readonly { readonly path: RegExp; readonly reason: string }[] = [];

export interface RecordedResponse {
  readonly test: string | undefined;
  readonly method: string;
  readonly path: string;
  readonly preflight: boolean;
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly body: Buffer;
}

const recorded: RecordedResponse[] = [];

type Handle = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void;

/**
 * The same app, recording every response it sends: when called as a request listener (supertest,
 * `createServer(app)`, `app.listen`) and when mounted in another app (which calls `app.handle`).
 */
export function recordResponses(app: Express): Express {
  const handle: Handle = (req, res, next) => {
    record(req, res);
    (app as unknown as { handle: Handle }).handle(req, res, next);
  };
  return new Proxy(app, {
    apply(target, thisArg, args: Parameters<Handle>) {
      record(args[0], args[1]);
      return Reflect.apply(target, thisArg, args) as unknown;
    },
    get(target, property, receiver) {
      return property === 'handle' ? handle : (Reflect.get(target, property, receiver) as unknown);
    },
  });
}

function record(req: IncomingMessage, res: ServerResponse): void {
  const test = expect.getState().currentTestName;
  const method = req.method ?? 'GET';
  const path = new URL(req.url ?? '/', 'http://tessera.test').pathname;
  const preflight = method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
  const chunks: Buffer[] = [];
  // The secrets of the exchange, for the log check after the file (test/logs.setup.ts).
  noteExchangeSecrets(req, res, () => Buffer.concat(chunks));
  const keep = (chunk: unknown, encoding: unknown) => {
    if (typeof chunk === 'string') chunks.push(Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'));
    else if (chunk instanceof Uint8Array) chunks.push(Buffer.from(chunk));
  };
  const { write, end } = res;
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    keep(chunk, rest[0]);
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof res.write;
  res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') keep(chunk, rest[0]);
    return (end as (...args: unknown[]) => ServerResponse).call(this, chunk, ...rest);
  } as typeof res.end;
  res.once('finish', () => {
    recorded.push({ test, method, path, preflight, status: res.statusCode, headers: res.getHeaders(), body: Buffer.concat(chunks) });
  });
}

/** Checks every response recorded since the last call; throws one error listing every mismatch. */
export async function checkRecordedResponses(): Promise<void> {
  const responses = recorded.splice(0);
  if (responses.length === 0) return;
  const validator = await loadValidator();
  const problems = responses.flatMap((response) =>
    validator(response).map((problem) => `${response.method} ${response.path} -> ${response.status}: ${problem}${response.test ? ` (in "${response.test}")` : ''}`),
  );
  if (problems.length > 0) {
    throw new Error(`responses that openapi.yaml does not describe:\n  ${[...new Set(problems)].join('\n  ')}`);
  }
}

/** What openapi.yaml finds wrong with one response (nothing when it describes it). */
export async function findMismatches(response: RecordedResponse): Promise<string[]> {
  return (await loadValidator())(response);
}

// The dereferenced document: every $ref replaced by what it points to.
interface Schema {
  readonly type?: unknown;
}
interface Header {
  readonly required?: boolean;
  readonly schema?: Schema;
}
interface MediaType {
  readonly schema?: Schema;
}
interface ResponseObject {
  readonly headers?: Readonly<Record<string, Header>>;
  readonly content?: Readonly<Record<string, MediaType>>;
}
interface Operation {
  readonly responses?: Readonly<Record<string, ResponseObject>>;
}
type PathItem = Readonly<Partial<Record<string, Operation>>>;
interface Document {
  readonly paths?: Readonly<Record<string, PathItem>>;
  readonly components?: { readonly responses?: Readonly<Record<string, ResponseObject>> };
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

let loading: Promise<(response: RecordedResponse) => string[]> | undefined;
/** Loaded on first use, so that test files without HTTP traffic never pay for it. */
function loadValidator(): Promise<(response: RecordedResponse) => string[]> {
  loading ??= (async () => {
    const [{ default: SwaggerParser }, { Ajv2020 }, { default: ajvFormats }] = await Promise.all([
      import('@apidevtools/swagger-parser'),
      import('ajv/dist/2020.js'),
      import('ajv-formats'),
    ]);
    // Checks the document against the OpenAPI 3.1 schema, then replaces every $ref by its target.
    const api = (await SwaggerParser.validate(SPEC_PATH)) as Document;
    // OpenAPI's own keywords (example, discriminator) are not JSON Schema: strict mode would refuse them.
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajvFormats.default(ajv);
    return createValidator(api, ajv);
  })();
  return loading;
}

function createValidator(api: Document, ajv: Ajv): (response: RecordedResponse) => string[] {
  ajv.addFormat('password', true); // an OpenAPI hint for user interfaces, not a constraint
  const compiled = new WeakMap<Schema, ValidateFunction>();
  const check = (schema: Schema, value: unknown): string[] => {
    let validate = compiled.get(schema);
    if (validate === undefined) compiled.set(schema, (validate = ajv.compile(schema)));
    if (validate(value)) return [];
    return [`: ${(validate.errors ?? []).map((error) => `${error.instancePath} ${error.message ?? 'is not valid'}`.trim()).join('; ')}`];
  };

  const paths = Object.entries(api.paths ?? {}).map(([template, item]) => ({ template, item, pattern: templatePattern(template) }));
  const component = (name: string): ResponseObject => {
    const found = api.components?.responses?.[name];
    if (found === undefined) throw new Error(`openapi.yaml has no components.responses.${name}`);
    return found;
  };

  return (response) => {
    const method = response.method.toLowerCase();
    const documented = paths.find((path) => path.template === response.path) ?? paths.find((path) => path.pattern.test(response.path));
    if (documented === undefined) {
      if (UNDOCUMENTED.some((entry) => entry.path.test(response.path))) return [];
      if (response.status === 404) return checkResponse(component('UnknownPath'), response, check);
      if (response.preflight && response.status === 204) return checkResponse(component('CorsPreflight'), response, check);
      return [`${response.path} is not a path in openapi.yaml`];
    }
    const operation = documented.item[method] ?? (method === 'head' ? documented.item['get'] : undefined);
    if (operation === undefined) {
      // The path does not serve this method: its operations document the 405 it gets instead (or
      // the 404 of a path that exists only with some configuration, such as /register).
      if (response.status !== 404 && response.status !== 405) {
        return [`${response.method} is not served at ${documented.template}: the answer must be 405 (or 404)`];
      }
      const status = String(response.status);
      const answer = METHODS.map((name) => documented.item[name]?.responses?.[status]).find((found) => found !== undefined);
      if (answer === undefined) return [`${response.method} is not served at ${documented.template}, and its operations document no ${status} for it`];
      return checkResponse(answer, response, check);
    }
    const responses = operation.responses ?? {};
    const status = String(response.status);
    const documentedResponse = responses[status] ?? responses[`${status[0]}XX`] ?? responses['default'];
    if (documentedResponse === undefined) return [`status ${status} is not documented for ${response.method} ${documented.template}`];
    return checkResponse(documentedResponse, response, check);
  };
}

/** `/admin/users/{id}` matches one path segment where the template has a parameter. */
function templatePattern(template: string): RegExp {
  const escaped = template.split(/\{[^}]+\}/).map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${escaped.join('[^/]+')}$`);
}

function checkResponse(documented: ResponseObject, response: RecordedResponse, check: (schema: Schema, value: unknown) => string[]): string[] {
  const problems: string[] = [];
  for (const [name, header] of Object.entries(documented.headers ?? {})) {
    // OpenAPI 3.1 §4.8.17.1: a Content-Type entry in `headers` is ignored; `content` says it.
    if (name.toLowerCase() === 'content-type') continue;
    const raw = response.headers[name.toLowerCase()];
    if (raw === undefined) {
      if (header.required === true) problems.push(`the required header ${name} is missing`);
      continue;
    }
    if (header.schema === undefined) continue;
    const text = Array.isArray(raw) ? raw.join(', ') : String(raw);
    problems.push(...check(header.schema, headerValue(header.schema, text)).map((problem) => `header ${name}${problem}`));
  }

  const content = documented.content;
  if (response.method === 'HEAD') return problems; // no body, whatever GET would send
  if (content === undefined || Object.keys(content).length === 0) {
    if (response.body.length > 0) problems.push('the response has a body, but no content is documented');
    return problems;
  }
  const contentType = response.headers['content-type'];
  const mediaType = typeof contentType === 'string' ? contentType.split(';')[0]!.trim().toLowerCase() : undefined;
  if (mediaType === undefined) return [...problems, `no Content-Type, but ${Object.keys(content).join(' or ')} is documented`];
  const key = Object.keys(content).find((range) => mediaTypeMatches(range, mediaType));
  if (key === undefined) return [...problems, `Content-Type ${mediaType} is not documented (${Object.keys(content).join(', ')} is)`];
  const schema = content[key]!.schema;
  if (schema === undefined) return problems;
  const text = response.body.toString('utf8');
  if (!/^application\/([a-z0-9.+-]+\+)?json$/.test(mediaType)) return [...problems, ...check(schema, text).map((problem) => `body${problem}`)];
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return [...problems, 'the body is not JSON'];
  }
  return [...problems, ...check(schema, body).map((problem) => `body${problem}`)];
}

/** Header values are text; a header whose schema is a number is compared as one. */
function headerValue(schema: Schema, text: string): unknown {
  const numeric = schema.type === 'integer' || schema.type === 'number';
  return numeric && /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
}

/** `application/json` matches itself, `application/*` and `*\/*` (OpenAPI 3.1 §4.8.14). */
function mediaTypeMatches(range: string, mediaType: string): boolean {
  const [type, subtype] = range.toLowerCase().split(';')[0]!.trim().split('/');
  const [actualType, actualSubtype] = mediaType.split('/');
  return (type === '*' || type === actualType) && (subtype === '*' || subtype === actualSubtype);
}
