import type { Kysely } from 'kysely';
import type { Database, SigningKeyRow } from './schema.js';

/**
 * Every key that is published in the JWKS: next, active and retired, newest first. The order is
 * total (kid breaks ties), so every replica builds the same JWKS document and the same ETag.
 */
export async function listSigningKeys(db: Kysely<Database>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'desc').orderBy('kid').execute();
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

export async function findNextSigningKey(db: Kysely<Database>): Promise<SigningKeyRow | undefined> {
  return db.selectFrom('signing_keys').selectAll().where('state', '=', 'next').orderBy('created_at').executeTakeFirst();
}

/** The active key retires and `kid` (a next key) becomes active, in one statement pair inside the caller's transaction. */
export async function promoteSigningKey(trx: Kysely<Database>, kid: string, now: Date): Promise<void> {
  await trx.updateTable('signing_keys').set({ state: 'retired', retired_at: now }).where('state', '=', 'active').execute();
  await trx.updateTable('signing_keys').set({ state: 'active', activated_at: now }).where('kid', '=', kid).execute();
}

/** Retired keys whose every token has expired leave the JWKS. */
export async function deleteRetiredKeys(db: Kysely<Database>, retiredBefore: Date): Promise<string[]> {
  const rows = await db
    .deleteFrom('signing_keys')
    .where('state', '=', 'retired')
    .where('retired_at', '<', retiredBefore)
    .returning('kid')
    .execute();
  return rows.map((row) => row.kid);
}

export async function updateSigningKeyCiphertext(db: Kysely<Database>, kid: string, ciphertext: string, kekId: string): Promise<void> {
  await db.updateTable('signing_keys').set({ private_key_ciphertext: ciphertext, kek_id: kekId }).where('kid', '=', kid).execute();
}
