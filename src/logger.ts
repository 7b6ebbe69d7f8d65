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
 * synchronously (pino's default): a line is with the kernel before the response it records is
 * sent, so an exit, a crash or an OOM kill loses none (writing them asynchronously saved a few per
 * cent of a refresh's CPU, but could lose the last lines of an exit: a drain test once missed its
 * `stopped`).
 */
export function createLogger(
  level: LogLevel,
  destination?: DestinationStream,
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
