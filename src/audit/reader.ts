import type { Kysely } from 'kysely';
import { cursorPage, decodeCursor } from '../cursor.js';
import { type AuditEventFilter, pageAuditEvents } from '../db/audit-events.js';
import type { AuditActorType, AuditEventRow, Database } from '../db/schema.js';
import { readRfc3339Filter } from '../rfc3339.js';

/** A filter or cursor that cannot be read: a 400 at the admin API, a usage error in the CLI. */
export class AuditQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditQueryError';
  }
}

/** What GET /admin/audit and `tessera audit list` show of an event. */
export interface AuditEventView {
  readonly id: string;
  readonly time: string;
  readonly type: string;
  readonly actor: { readonly type: AuditActorType; readonly id: string | null };
  readonly subject: string | null;
  readonly client_id: string | null;
  readonly ip: string | null;
  readonly request_id: string | null;
  readonly details: Record<string, unknown>;
}

/** The filters as text, as a query string or command line gives them. */
export interface AuditFilterInput {
  readonly types?: readonly string[] | undefined;
  readonly actorType?: string | undefined;
  readonly actor?: string | undefined;
  readonly subject?: string | undefined;
  readonly client?: string | undefined;
  readonly since?: string | undefined;
  readonly until?: string | undefined;
}

const ACTOR_TYPES: readonly AuditActorType[] = ['user', 'client', 'cli', 'system'];
/** Event names are snake_case words; one that no event has simply matches nothing. */
const EVENT_NAME = /^[a-z][a-z0-9_]{0,63}$/;
const MAX_VALUE_LENGTH = 255;

function readTime(name: string, text: string | undefined): Date | undefined {
  return readRfc3339Filter(name, text, (message) => new AuditQueryError(message));
}

function readValue(name: string, text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  // eslint-disable-next-line no-control-regex
  if (text === '' || text.length > MAX_VALUE_LENGTH || /[\u0000-\u001f\u007f]/.test(text)) {
    throw new AuditQueryError(`${name} must be 1 to ${MAX_VALUE_LENGTH} characters without control characters`);
  }
  return text;
}

/** Checks every filter; the first bad one is the error. */
export function readAuditFilter(input: AuditFilterInput): AuditEventFilter {
  const types = input.types?.flatMap((type) => type.split(','));
  if (types !== undefined && (types.length > 50 || !types.every((type) => EVENT_NAME.test(type)))) {
    throw new AuditQueryError('type must be one or more event names (such as login_failed), separated by commas');
  }
  if (input.actorType !== undefined && !(ACTOR_TYPES as readonly string[]).includes(input.actorType)) {
    throw new AuditQueryError(`actor_type must be one of: ${ACTOR_TYPES.join(', ')}`);
  }
  const since = readTime('since', input.since);
  const until = readTime('until', input.until);
  if (since !== undefined && until !== undefined && since.getTime() >= until.getTime()) throw new AuditQueryError('since must be before until');
  return {
    types,
    actorType: input.actorType as AuditActorType | undefined,
    actorId: readValue('actor', input.actor),
    subject: readValue('subject', input.subject),
    clientId: readValue('client', input.client),
    since,
    until,
  };
}

function viewAuditEvent(row: AuditEventRow): AuditEventView {
  return {
    // bigint: text from pg, a number from PGlite.
    id: String(row.id),
    time: row.occurred_at.toISOString(),
    type: row.type,
    actor: { type: row.actor_type, id: row.actor_id },
    subject: row.subject,
    client_id: row.client_id,
    ip: row.ip,
    request_id: row.request_id,
    details: row.details,
  };
}

const LIST = 'audit';

/** A page of events, newest first, and the cursor of the next (null: this was the last). */
export async function listAuditEvents(
  db: Kysely<Database>,
  cursorKeys: readonly Buffer[],
  filter: AuditEventFilter,
  page: { readonly limit: number; readonly cursor?: string | undefined },
): Promise<{ items: AuditEventView[]; next_cursor: string | null }> {
  let after: { occurredAt: Date; id: string } | undefined;
  if (page.cursor !== undefined) {
    const position = decodeCursor(cursorKeys, LIST, page.cursor, 2);
    const occurredAt = position && new Date(position[0]!);
    if (position === undefined || !/^\d{1,19}$/.test(position[1]!) || occurredAt === undefined || Number.isNaN(occurredAt.getTime())) {
      throw new AuditQueryError('cursor must be the next_cursor of a previous page');
    }
    after = { occurredAt, id: position[1]! };
  }
  const rows = await pageAuditEvents(db, filter, { limit: page.limit + 1, after });
  const { items, next_cursor } = cursorPage(cursorKeys, LIST, rows, page.limit, (row) => [row.occurred_at.toISOString(), String(row.id)]);
  return { items: items.map(viewAuditEvent), next_cursor };
}
