import { type Kysely, sql } from 'kysely';
import type { AuditActorType, AuditEventRow, Database, NewAuditEventRow } from './schema.js';

/**
 * One statement with one parameter, however many rows: the batch as a JSON array that PostgreSQL
 * expands (jsonb_to_recordset). A batch of 500 then costs the service one JSON.stringify, not the
 * compiling and binding of 4,500 parameters on the thread that serves requests.
 */
export async function insertAuditEvents(db: Kysely<Database>, rows: readonly NewAuditEventRow[]): Promise<void> {
  if (rows.length === 0) return;
  await sql`insert into audit_events (occurred_at, type, actor_type, actor_id, subject, client_id, ip, request_id, details)
    select occurred_at, type, actor_type, actor_id, subject, client_id, ip, request_id, coalesce(details, '{}'::jsonb)
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as r(occurred_at timestamptz, type text, actor_type text, actor_id text,
      subject text, client_id text, ip text, request_id text, details jsonb)`.execute(db);
}

/** What a listing of audit events keeps; every member narrows it. `until` is exclusive, `since` inclusive. */
export interface AuditEventFilter {
  readonly types?: readonly string[] | undefined;
  readonly actorType?: AuditActorType | undefined;
  readonly actorId?: string | undefined;
  readonly subject?: string | undefined;
  readonly clientId?: string | undefined;
  readonly since?: Date | undefined;
  readonly until?: Date | undefined;
}

/** Where a page starts: after the event at (occurred_at, id), newest first. */
export interface AuditEventPosition {
  readonly occurredAt: Date;
  readonly id: string;
}

/** A page of events, newest first (ties by id), strictly after `after`. */
export async function pageAuditEvents(
  db: Kysely<Database>,
  filter: AuditEventFilter,
  page: { readonly limit: number; readonly after?: AuditEventPosition | undefined },
): Promise<AuditEventRow[]> {
  let query = db.selectFrom('audit_events').selectAll().orderBy('occurred_at', 'desc').orderBy('id', 'desc').limit(page.limit);
  if (filter.types !== undefined && filter.types.length > 0) query = query.where('type', 'in', [...filter.types]);
  if (filter.actorType !== undefined) query = query.where('actor_type', '=', filter.actorType);
  if (filter.actorId !== undefined) query = query.where('actor_id', '=', filter.actorId);
  if (filter.subject !== undefined) query = query.where('subject', '=', filter.subject);
  if (filter.clientId !== undefined) query = query.where('client_id', '=', filter.clientId);
  if (filter.since !== undefined) query = query.where('occurred_at', '>=', filter.since);
  if (filter.until !== undefined) query = query.where('occurred_at', '<', filter.until);
  const after = page.after;
  if (after !== undefined) {
    query = query.where((eb) =>
      eb.or([eb('occurred_at', '<', after.occurredAt), eb.and([eb('occurred_at', '=', after.occurredAt), eb('id', '<', after.id as never)])]),
    );
  }
  return query.execute();
}

/** Deletes up to `batchSize` events older than `before`; returns how many went. */
export async function purgeAuditEventsBefore(db: Kysely<Database>, before: Date, batchSize: number): Promise<number> {
  const result = await db
    .deleteFrom('audit_events')
    .where('id', 'in', (eb) => eb.selectFrom('audit_events').select('id').where('occurred_at', '<', before).limit(batchSize))
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
