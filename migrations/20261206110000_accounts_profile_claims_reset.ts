import { type Kysely, sql } from 'kysely';

// Issue 21 items 1-3 (DESIGN.md, "Users, claims and audit"). Expand only: every new column is
// nullable or has a default, so the previous release's inserts (which do not name them) still
// succeed and its answers (explicit views) never show them; the new table and the new index are
// on nothing the previous release writes except users.email, which it never sets.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('email', 'text')
    .addColumn('email_verified', 'boolean', (col) => col.notNull().defaultTo(false))
    .addColumn('name', 'text')
    // A JSON object of at most 4 KiB (src/auth/profile.ts checks the shape and the size).
    .addColumn('attributes', 'jsonb', (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  // One account per address, compared case-insensitively (the local part is kept as given, RFC
  // 5321 §2.4, but two accounts differing only in its case would be a trap). The column is new and
  // empty, so the unique index cannot fail on existing rows.
  await sql`create unique index users_email_key on users (lower(email))`.execute(db);

  // Per client: the user's role names as a `roles` claim (RFC 9068 §2.2.3.1), and claims taken
  // from user attributes: {"tenant": "attributes.tenant"}.
  await db.schema
    .alterTable('clients')
    .addColumn('roles_claim', 'boolean', (col) => col.notNull().defaultTo(false))
    .addColumn('token_claims', 'jsonb', (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();

  // Password-reset tokens: only the SHA-256 of the 256-bit token is kept; one use (used_at), 30
  // minutes. user_id is null only on the row a request for nobody writes and deletes again in its
  // own transaction (src/db/password-reset-tokens.ts): never committed, there for the timing.
  await db.schema
    .createTable('password_reset_tokens')
    .addColumn('token_hash', 'text', (col) => col.primaryKey())
    .addColumn('user_id', 'uuid', (col) => col.references('users.id').onDelete('cascade'))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addColumn('used_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('password_reset_tokens_user_id').on('password_reset_tokens').column('user_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('password_reset_tokens').execute();
  await db.schema.alterTable('clients').dropColumn('token_claims').dropColumn('roles_claim').execute();
  await sql`drop index users_email_key`.execute(db);
  await db.schema.alterTable('users').dropColumn('attributes').dropColumn('name').dropColumn('email_verified').dropColumn('email').execute();
}
