import { type Kysely, sql } from 'kysely';

// Key-lifecycle decisions on one clock, the database's (src/keys/lifecycle.ts).
// Expand only: the previous release ignores both and keeps working on the migrated database.

export async function up(db: Kysely<unknown>): Promise<void> {
  // When a next key starts signing, decided once when it is added (now() + the promotion delay).
  // Null on keys the previous release added: the first maintenance pass that sees one decides it.
  await db.schema.alterTable('signing_keys').addColumn('activates_at', 'timestamptz').execute();

  // What each serving replica announces (the JWKS Cache-Control max-age, how often it reloads the
  // key table, how long its access tokens live), one row per distinct combination, stamped with
  // now() on every maintenance pass: whoever adds or removes a key takes the largest in force.
  await db.schema
    .createTable('replica_settings')
    .addColumn('jwks_max_age', 'integer', (col) => col.notNull())
    .addColumn('key_reload_interval', 'integer', (col) => col.notNull())
    .addColumn('access_token_ttl', 'integer', (col) => col.notNull())
    .addColumn('announced_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('replica_settings_pkey', ['jwks_max_age', 'key_reload_interval', 'access_token_ttl'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('replica_settings').execute();
  await db.schema.alterTable('signing_keys').dropColumn('activates_at').execute();
}
