import pg from 'pg';
import type { Logger } from 'pino';
import { waitUnless } from '../wait.js';
import { isDatabaseAnswer } from './errors.js';

/**
 * SQLSTATEs of a server that will take connections soon: 57P03 cannot_connect_now (starting up,
 * recovering), 53300 too_many_connections. Any other answer (a wrong password, no such database)
 * will not change by waiting.
 */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(['57P03', '53300']);
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;
/** One attempt's own limit: an address that drops packets must not use up the whole wait at once. */
const ATTEMPT_TIMEOUT_MS = 5_000;
const STOPPED = Symbol('stopped');

/** Where DATABASE_URL points, for logs and messages: host, port and database, never the credentials. */
export function describeDatabaseTarget(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`;
}

/**
 * Start-up on PostgreSQL: until the database answers, retries with exponential backoff (0.25 s,
 * doubling, at most 5 s apart) for up to `timeoutSeconds` (DATABASE_CONNECT_TIMEOUT), logging each
 * retry, then fails with a message naming the target and the last reason. In Kubernetes or compose
 * PostgreSQL often starts with Tessera; a restart loop would only delay both. 'stopped': `stopSignal`
 * came first.
 */
export async function waitForDatabase(
  url: string,
  log: Logger,
  timeoutSeconds: number,
  stopSignal: Promise<unknown> = new Promise(() => undefined),
): Promise<'reachable' | 'stopped'> {
  const database = describeDatabaseTarget(url);
  const deadline = performance.now() + timeoutSeconds * 1000;
  // Asked to stop while it waits (a rollout gave up on this pod): no reason to wait any longer.
  const stopped = stopSignal.then(() => STOPPED);
  let backoff = FIRST_BACKOFF_MS;
  for (let attempt = 1; ; attempt++) {
    const left = deadline - performance.now();
    const error = await Promise.race([tryDatabase(url, Math.min(ATTEMPT_TIMEOUT_MS, Math.max(left, 1_000))), stopped]);
    if (error === STOPPED) return 'stopped';
    if (error === undefined) {
      if (attempt > 1) log.info({ database, attempts: attempt }, 'database reachable');
      return 'reachable';
    }
    const reason = describeFailure(error);
    if (isDatabaseAnswer(error) && !TRANSIENT_CODES.has((error as { code: string }).code)) {
      throw new Error(`PostgreSQL at ${database} refused the connection: ${reason}`);
    }
    const remaining = deadline - performance.now();
    if (remaining <= 0) {
      log.error({ database, attempts: attempt, reason }, 'database not reachable within DATABASE_CONNECT_TIMEOUT: giving up');
      throw new Error(`PostgreSQL at ${database} did not answer within DATABASE_CONNECT_TIMEOUT (${timeoutSeconds}s): ${reason}`);
    }
    const wait = Math.min(backoff, remaining);
    log.warn({ database, attempt, retry_in_ms: Math.round(wait), reason }, 'database not reachable yet: retrying');
    if ((await waitUnless(wait, stopped)) === STOPPED) return 'stopped';
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
}

/** Connects and runs `select 1`: undefined when that worked, else what went wrong. */
async function tryDatabase(url: string, timeoutMs: number): Promise<unknown> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, application_name: 'tessera-start' });
  client.on('error', () => undefined); // a failed attempt is reported by its rejection
  try {
    await client.connect();
    await client.query('select 1');
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A short reason: the SQLSTATE and message PostgreSQL answered, or the socket error's code. Node
 * reports a host with several addresses (localhost: ::1 and 127.0.0.1) as an AggregateError
 * without a message: its first error speaks for it. pg's messages carry no password.
 */
function describeFailure(error: unknown): string {
  const first = error instanceof AggregateError && error.errors.length > 0 ? (error.errors[0] as unknown) : error;
  const { code, message } = (first ?? {}) as { code?: unknown; message?: unknown };
  if (isDatabaseAnswer(first)) return `${String(code)} ${String(message)}`;
  if (typeof code === 'string') return code;
  return typeof message === 'string' && message !== '' ? message : String(first);
}
