import { type Kysely, sql } from 'kysely';

// The durable audit log (DESIGN.md, "Users, claims and audit"): every audit event is also a row.
// A new table: the previous release never reads or writes it, so it serves on the migrated database.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_events')
    .addColumn('id', 'bigint', (col) => col.generatedByDefaultAsIdentity().primaryKey())
    // The service's clock (deps.clock), not the database's: the same instant its log line carries.
    .addColumn('occurred_at', 'timestamptz', (col) => col.notNull())
    .addColumn('type', 'text', (col) => col.notNull())
    .addColumn('actor_type', 'text', (col) => col.notNull().check(sql`actor_type in ('user', 'client', 'cli', 'system')`))
    // A user id, a client id, the OS user of a CLI change, or what the system was doing.
    .addColumn('actor_id', 'text')
    .addColumn('subject', 'text')
    .addColumn('client_id', 'text')
    .addColumn('ip', 'text')
    .addColumn('request_id', 'text')
    .addColumn('details', 'jsonb', (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  // Newest first is how every listing reads it, and the purge cuts by time.
  await db.schema.createIndex('audit_events_occurred_at_idx').on('audit_events').columns(['occurred_at desc', 'id desc']).execute();
  await db.schema.createIndex('audit_events_subject_idx').on('audit_events').columns(['subject', 'occurred_at desc']).execute();
  await db.schema.createIndex('audit_events_type_idx').on('audit_events').columns(['type', 'occurred_at desc']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('audit_events').execute();
}
