import { type Kysely, sql } from 'kysely';

// Refresh-token families (src/refresh/rotation.ts explains the scheme).

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('refresh_families')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('client_id', 'text', (col) => col.notNull().references('clients.id').onDelete('cascade'))
    // The scope granted at login; a refresh may narrow an access token, never the family.
    .addColumn('scope', sql`text[]`, (col) => col.notNull())
    .addColumn('auth_time', 'timestamptz', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addColumn('last_used_at', 'timestamptz', (col) => col.notNull())
    // The generation of the one token that may be rotated now.
    .addColumn('generation', 'integer', (col) => col.notNull())
    .addColumn('rotated_at', 'timestamptz')
    // The current token, sealed under a key derived from its parent: see src/refresh/rotation.ts.
    .addColumn('successor_ciphertext', 'text')
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('revoked_reason', 'text')
    .execute();
  await db.schema.createIndex('refresh_families_user_id_idx').on('refresh_families').column('user_id').execute();
  await db.schema.createIndex('refresh_families_client_id_idx').on('refresh_families').column('client_id').execute();
  await db.schema.createIndex('refresh_families_expires_at_idx').on('refresh_families').column('expires_at').execute();
  await db.schema.createIndex('refresh_families_last_used_at_idx').on('refresh_families').column('last_used_at').execute();

  await db.schema
    .createTable('refresh_tokens')
    // SHA-256 of the token: the token itself is never stored.
    .addColumn('token_hash', 'text', (col) => col.primaryKey())
    .addColumn('family_id', 'uuid', (col) => col.notNull().references('refresh_families.id').onDelete('cascade'))
    .addColumn('generation', 'integer', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addUniqueConstraint('refresh_tokens_family_generation', ['family_id', 'generation'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('refresh_tokens').execute();
  await db.schema.dropTable('refresh_families').execute();
}
