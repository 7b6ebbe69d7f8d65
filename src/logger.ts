import { hostname } from 'node:os';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config.js';
import { traceLogFields } from './telemetry/spans.js';

/**
 * Paths pino blanks out wherever they appear. The request serializer (src/http/request-log.ts)
 * already logs no headers, bodies or query strings; this is the second line of defence.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  '*.password',
  '*.new_password',
  '*.client_secret',
  '*.refresh_token',
  '*.access_token',
  '*.token',
  '*.secret',
  '*.privateKey',
  '*.private_key',
  'password',
  'client_secret',
  'refresh_token',
  'access_token',
  'secret',
];

/** Every name REDACTED_PATHS redacts anywhere, as a top-level name: enough for a line with no nested object (src/audit.ts). */
export const TOP_LEVEL_REDACTED_PATHS = [...new Set(REDACTED_PATHS.filter((path) => !path.startsWith('req.')).map((path) => path.replace(/^\*\./, '')))];
export const REDACTED = '[redacted]';

/**
 * JSON lines to stdout (or `destination`, as the tests capture it), every one with `hostname` and
 * `pid` (DESIGN.md, Observability). With `traceIds` (tracing on), each line written inside a span
 * also names its `trace_id` and `span_id`; without, no per-line work is added. Written
 * asynchronously: a line goes to the kernel at once when no write is in flight, and lines that come
 * while one is are joined into the next write, so that a busy server makes one write for many lines
 * rather than one per line (two per request: the request line and an audit line), and a log pipe
 * that is slow to drain never blocks the event loop. pino flushes what is pending when the process
 * exits.
 */
export function createLogger(
  level: LogLevel,
  destination: DestinationStream = pino.destination({ dest: 1, sync: false }),
  options: { readonly traceIds?: boolean } = {},
): Logger {
  return pino(
    {
      level,
      base: { service: 'tessera', hostname: hostname(), pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: REDACTED },
      formatters: { level: (label) => ({ level: label }) },
      ...(options.traceIds === true ? { mixin: traceLogFields } : {}),
    },
    destination,
  );
}
