import { type Kysely, sql } from 'kysely';

// Append-only: never edit a migration that has shipped; add a new, later-named file instead.
// Uses only what PostgreSQL 13+ and PGlite both support.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    // NFKC + case-folded (see src/auth/usernames.ts), so look-alikes collide on this constraint.
    .addColumn('username', 'text', (col) => col.notNull().unique())
    .addColumn('password_hash', 'text', (col) => col.notNull())
    .addColumn('disabled', 'boolean', (col) => col.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('password_changed_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('roles')
    .addColumn('name', 'text', (col) => col.primaryKey())
    .addColumn('description', 'text', (col) => col.notNull().defaultTo(''))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('role_scopes')
    .addColumn('role_name', 'text', (col) => col.notNull().references('roles.name').onDelete('cascade'))
    .addColumn('scope', 'text', (col) => col.notNull())
    .addPrimaryKeyConstraint('role_scopes_pkey', ['role_name', 'scope'])
    .execute();

  await db.schema
    .createTable('user_roles')
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('role_name', 'text', (col) => col.notNull().references('roles.name').onDelete('cascade'))
    .addPrimaryKeyConstraint('user_roles_pkey', ['user_id', 'role_name'])
    .execute();
  await db.schema.createIndex('user_roles_role_name_idx').on('user_roles').column('role_name').execute();

  await db.schema
    .createTable('user_scopes')
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('scope', 'text', (col) => col.notNull())
    .addPrimaryKeyConstraint('user_scopes_pkey', ['user_id', 'scope'])
    .execute();

  await db.schema
    .createTable('clients')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('name', 'text', (col) => col.notNull().defaultTo(''))
    .addColumn('type', 'text', (col) => col.notNull().check(sql`type in ('confidential', 'public')`))
    // SHA-256 of a 256-bit random secret; null exactly for public clients.
    .addColumn('secret_hash', 'text')
    .addColumn('grant_types', sql`text[]`, (col) => col.notNull())
    .addColumn('allowed_scopes', sql`text[]`, (col) => col.notNull().defaultTo(sql`'{}'`))
    .addColumn('default_scopes', sql`text[]`, (col) => col.notNull().defaultTo(sql`'{}'`))
    // Empty: tokens get the service's AUDIENCE.
    .addColumn('audience', sql`text[]`, (col) => col.notNull().defaultTo(sql`'{}'`))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('clients_secret_matches_type', sql`(type = 'public') = (secret_hash is null)`)
    .execute();

  await db.schema
    .createTable('signing_keys')
    .addColumn('kid', 'text', (col) => col.primaryKey())
    .addColumn('state', 'text', (col) => col.notNull().check(sql`state in ('next', 'active', 'retired')`))
    .addColumn('algorithm', 'text', (col) => col.notNull())
    .addColumn('public_jwk', 'jsonb', (col) => col.notNull())
    // AES-256-GCM under the key-encryption key named by kek_id (src/keys/key-encryption.ts).
    .addColumn('private_key_ciphertext', 'text', (col) => col.notNull())
    .addColumn('kek_id', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addColumn('activated_at', 'timestamptz')
    .addColumn('retired_at', 'timestamptz')
    .execute();
  // At most one key signs at a time, whatever replicas or CLI runs race to create one.
  await sql`create unique index signing_keys_one_active on signing_keys (state) where state = 'active'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['signing_keys', 'clients', 'user_scopes', 'user_roles', 'role_scopes', 'roles', 'users']) {
    await db.schema.dropTable(table).execute();
  }
}
