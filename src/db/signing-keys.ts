import type { Kysely } from 'kysely';
import type { Database, SigningKeyRow } from './schema.js';

/** Every key that is published in the JWKS: next, active and retired. */
export async function listSigningKeys(db: Kysely<Database>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'desc').execute();
}

export async function insertSigningKey(
  db: Kysely<Database>,
  key: Omit<SigningKeyRow, 'public_jwk'> & { readonly public_jwk: Record<string, unknown> },
): Promise<void> {
  await db
    .insertInto('signing_keys')
    .values({ ...key, public_jwk: JSON.stringify(key.public_jwk) })
    .execute();
}

export async function findActiveSigningKey(db: Kysely<Database>): Promise<SigningKeyRow | undefined> {
  return db.selectFrom('signing_keys').selectAll().where('state', '=', 'active').executeTakeFirst();
}
