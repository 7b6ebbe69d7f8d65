import { type Kysely, sql } from 'kysely';

// A client's own rate limit: requests per CLIENT_RATE_WINDOW once it is authenticated (the client
// layer, src/limits/rate-limits.ts). Null: none of its own, so CLIENT_RATE_LIMIT applies if set.
// Nullable, so the previous release keeps working on the migrated database (it never reads it).

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('clients')
    .addColumn('rate_limit', 'integer', (col) => col.check(sql`rate_limit > 0`))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('clients').dropColumn('rate_limit').execute();
}
