import { type Kysely, sql } from 'kysely';

// Browser sign-in (issue 22, DESIGN.md "Browser sign-in"): the URIs a client may be sent back to,
// the browser sessions of the hosted sign-in page, and the authorization codes of RFC 6749 §4.1.
// Expand-only: the client columns are nullable (null reads as none, or as a first-party client),
// the tables are new, and refresh_families gains a nullable link to the browser session that
// started it, so that the previous release keeps reading and writing every old row unchanged.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('clients')
    .addColumn('redirect_uris', sql`text[]`)
    .addColumn('post_logout_redirect_uris', sql`text[]`)
    // Room for a consent screen: null or true is a first-party client, which skips consent.
    .addColumn('first_party', 'boolean')
    .execute();

  await db.schema
    .createTable('browser_sessions')
    // The public id: the ID token's `sid` and the refresh families' browser_session_id.
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    // SHA-256 of the cookie's 256-bit random value; the value itself is never stored.
    .addColumn('token_hash', 'text', (col) => col.notNull().unique())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    // The user's password_changed_at at sign-in: a password change ends the session (compared for equality).
    .addColumn('password_changed_at', 'timestamptz', (col) => col.notNull())
    .addColumn('auth_time', 'timestamptz', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addColumn('ended_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('browser_sessions_user_id_idx').on('browser_sessions').column('user_id').execute();

  await db.schema
    .createTable('authorization_codes')
    // SHA-256 of the code's 256 random bits.
    .addColumn('code_hash', 'text', (col) => col.primaryKey())
    .addColumn('client_id', 'text', (col) => col.notNull().references('clients.id').onDelete('cascade'))
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('browser_session_id', 'uuid', (col) => col.notNull().references('browser_sessions.id').onDelete('cascade'))
    .addColumn('redirect_uri', 'text', (col) => col.notNull())
    .addColumn('code_challenge', 'text', (col) => col.notNull())
    .addColumn('scope', sql`text[]`, (col) => col.notNull())
    .addColumn('nonce', 'text')
    .addColumn('password_changed_at', 'timestamptz', (col) => col.notNull())
    .addColumn('auth_time', 'timestamptz', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    // Set by the first (only) exchange, with the family it starts: a replay revokes that family.
    .addColumn('used_at', 'timestamptz')
    .addColumn('family_id', 'uuid')
    .execute();

  await db.schema.alterTable('refresh_families').addColumn('browser_session_id', 'uuid').execute();
  await db.schema.createIndex('refresh_families_browser_session_idx').on('refresh_families').column('browser_session_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('refresh_families_browser_session_idx').execute();
  await db.schema.alterTable('refresh_families').dropColumn('browser_session_id').execute();
  await db.schema.dropTable('authorization_codes').execute();
  await db.schema.dropTable('browser_sessions').execute();
  await db.schema
    .alterTable('clients')
    .dropColumn('first_party')
    .dropColumn('post_logout_redirect_uris')
    .dropColumn('redirect_uris')
    .execute();
}
