import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { insertAuditEvents } from '../db/audit-events.js';
import type { Database, NewAuditEventRow } from '../db/schema.js';
import { inTransaction } from '../db/transaction.js';
import { type AuditContext, type AuditFields, type AuditNote, toAuditRow } from './entry.js';
import { audit, type AuditEvent } from './events.js';

/** What writes audit events: the database (or a transaction on it), the log, and the clock that stamps them. */
export interface AuditSink {
  readonly db: Kysely<Database>;
  readonly log: Logger;
  readonly clock: Clock;
}

/**
 * A change and the audit events that record it, in one transaction (the caller's, when `sink.db`
 * already is one): a change that rolls back leaves no row, and no row claims a change that did not
 * commit. `notes` reads the change's result (how many sessions ended, the new user's id). The log
 * lines follow the commit.
 */
export async function auditedChange<T>(
  sink: AuditSink,
  context: AuditContext,
  change: (trx: Kysely<Database>) => Promise<T>,
  notes: (result: T) => AuditNote | readonly AuditNote[] | undefined,
): Promise<T> {
  const { result, written } = await inTransaction(sink.db, async (trx) => {
    const result = await change(trx);
    const described = notes(result);
    const written: readonly AuditNote[] = described === undefined ? [] : 'event' in described ? [described] : described;
    const at = new Date(sink.clock.now());
    await insertAuditEvents(trx, written.map((note) => toAuditRow(note, context, at)));
    return { result, written };
  });
  for (const note of written) audit(sink.log, note.event, note.fields, note.level);
  return result;
}

/** An event that records no change of its own (or one already committed): `auditedChange` with nothing to change. */
export async function recordAuditNow(sink: AuditSink, context: AuditContext, note: AuditNote): Promise<void> {
  await auditedChange(sink, context, async () => undefined, () => note);
}

/** Records an event whose change has no transaction to share (a login, a refresh, a limit tripped). */
export type RecordAudit = (event: AuditEvent, fields: AuditFields, context: AuditContext, level?: 'info' | 'warn') => void;

/**
 * The events of the hot paths (a refresh, a login, a failure, a limit tripped), whose changes have
 * no transaction of their own to share: the log line at once, the row in a batch a moment later.
 */
export interface AuditLog {
  readonly record: RecordAudit;
  /** Writes what is buffered now; never throws (a failure is logged and counted). */
  flush(): Promise<void>;
  /** Flushes, and stops the timer (the service stops; the database closes next). */
  close(): Promise<void>;
}

export interface AuditBatching {
  /** A buffered row is written within this long. */
  readonly intervalMs: number;
  /** Or as soon as this many wait. */
  readonly maxRows: number;
  /** Beyond this many waiting (the database is down), new rows are dropped and counted. */
  readonly maxBuffered: number;
}

export const DEFAULT_AUDIT_BATCHING: AuditBatching = { intervalMs: 1000, maxRows: 500, maxBuffered: 50_000 };

/**
 * One multi-row INSERT a second (or per `maxRows`) instead of one per request: a refresh pays for
 * building its row only, so `npm run bench` does not see it. A write that fails (the database is
 * down) fails no request: its rows are logged as lost and counted (`rowsDropped`), and their log
 * lines were written already. Up to `intervalMs` of rows are lost if the process is killed
 * (SIGKILL, OOM): the log lines, written synchronously, still hold them.
 */
export function createAuditLog(
  deps: AuditSink & { readonly rowsDropped: (count: number) => void },
  batching: AuditBatching = DEFAULT_AUDIT_BATCHING,
): AuditLog {
  let buffer: NewAuditEventRow[] = [];
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  /** Rows handed to a batch not written yet: with the buffer, what a slow database may hold in memory. */
  let queued = 0;

  const write = async (rows: NewAuditEventRow[]) => {
    try {
      await insertAuditEvents(deps.db, rows);
    } catch (error) {
      deps.rowsDropped(rows.length);
      deps.log.error({ err: error, rows: rows.length }, 'could not write audit events to the database: their log lines stand for them');
    } finally {
      queued -= rows.length;
    }
  };
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (buffer.length > 0) {
      const rows = buffer;
      buffer = [];
      queued += rows.length;
      // One batch at a time, in order: a slow database does not get many at once.
      writing = writing.then(() => write(rows));
    }
    return writing;
  };

  return {
    record(event, fields, context, level) {
      audit(deps.log, event, fields, level);
      if (buffer.length + queued >= batching.maxBuffered) {
        deps.rowsDropped(1);
        return;
      }
      buffer.push(toAuditRow({ event, fields }, context, new Date(deps.clock.now())));
      if (buffer.length >= batching.maxRows) void flush();
      else if (timer === undefined) {
        timer = setTimeout(() => void flush(), batching.intervalMs);
        timer.unref();
      }
    },
    flush,
    close: flush,
  };
}
