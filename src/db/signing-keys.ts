import { type Kysely, sql } from 'kysely';
import type { Database, SigningKeyRow } from './schema.js';

// Every time in this table is written by PostgreSQL's now() and compared with it, never with a
// replica's or the CLI's clock: the hosts that share these keys do not share a clock (ATTACKS.md I5).

/** A key as generateSigningKey makes it, before it has a state or any time. */
export type NewSigningKey = Pick<SigningKeyRow, 'kid' | 'algorithm' | 'private_key_ciphertext' | 'kek_id'> & {
  readonly public_jwk: Record<string, unknown>;
};

/** A key with its age: seconds since it was activated (or created), on the database's clock. */
export type SigningKeyWithAge = SigningKeyRow & { readonly age_seconds: number };

/**
 * Every key that is published in the JWKS: next, active and retired, newest first. The order is
 * total (kid breaks ties), so every replica builds the same JWKS document and the same ETag.
 */
export async function listSigningKeys(db: Kysely<Database>): Promise<SigningKeyWithAge[]> {
  return db
    .selectFrom('signing_keys')
    .selectAll()
    .select(sql<number>`extract(epoch from now() - coalesce(activated_at, created_at))::float8`.as('age_seconds'))
    .orderBy('created_at', 'desc')
    .orderBy('kid')
    .execute();
}

/** A key with the times given (tests and fixtures; the lifecycle uses the functions below). */
export async function insertSigningKey(
  db: Kysely<Database>,
  key: Omit<SigningKeyRow, 'public_jwk' | 'activates_at'> & { readonly public_jwk: Record<string, unknown>; readonly activates_at?: Date | null },
): Promise<void> {
  await db
    .insertInto('signing_keys')
    .values({ ...key, public_jwk: JSON.stringify(key.public_jwk) })
    .execute();
}

/** The first key of a deployment: active from now(). */
export async function insertFirstSigningKey(db: Kysely<Database>, key: NewSigningKey): Promise<void> {
  await db
    .insertInto('signing_keys')
    .values({ ...key, public_jwk: JSON.stringify(key.public_jwk), state: 'active', created_at: sql<Date>`now()`, activated_at: sql<Date>`now()` })
    .execute();
}

/** A next key, published from now() and signing from now() + `delaySeconds`: decided here, once. */
export async function insertNextSigningKey(db: Kysely<Database>, key: NewSigningKey, delaySeconds: number): Promise<SigningKeyRow> {
  return db
    .insertInto('signing_keys')
    .values({
      ...key,
      public_jwk: JSON.stringify(key.public_jwk),
      state: 'next',
      created_at: sql<Date>`now()`,
      activates_at: sql<Date>`now() + interval '1 second' * ${delaySeconds}`,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findActiveSigningKey(db: Kysely<Database>): Promise<SigningKeyRow | undefined> {
  return db.selectFrom('signing_keys').selectAll().where('state', '=', 'active').executeTakeFirst();
}

export async function findNextSigningKey(db: Kysely<Database>): Promise<SigningKeyRow | undefined> {
  return db.selectFrom('signing_keys').selectAll().where('state', '=', 'next').orderBy('created_at').executeTakeFirst();
}

/**
 * A next key added by the previous release has no activation time: it gets now() + `delaySeconds`,
 * as if it had been added now (its created_at came from some host's clock, which nothing compares).
 */
export async function decideMissingActivations(db: Kysely<Database>, delaySeconds: number): Promise<string[]> {
  const rows = await db
    .updateTable('signing_keys')
    .set({ activates_at: sql<Date>`now() + interval '1 second' * ${delaySeconds}` })
    .where('state', '=', 'next')
    .where('activates_at', 'is', null)
    .returning('kid')
    .execute();
  return rows.map((row) => row.kid);
}

/** The next key whose activation time the database's clock has reached. */
export async function findDueNextSigningKey(db: Kysely<Database>): Promise<SigningKeyRow | undefined> {
  return db
    .selectFrom('signing_keys')
    .selectAll()
    .where('state', '=', 'next')
    .where(sql<boolean>`activates_at <= now()`)
    .orderBy('activates_at')
    .executeTakeFirst();
}

/** The active key retires and `kid` (a next key) becomes active, in one statement pair inside the caller's transaction. */
export async function promoteSigningKey(trx: Kysely<Database>, kid: string): Promise<void> {
  await trx.updateTable('signing_keys').set({ state: 'retired', retired_at: sql<Date>`now()` }).where('state', '=', 'active').execute();
  await trx.updateTable('signing_keys').set({ state: 'active', activated_at: sql<Date>`now()` }).where('kid', '=', kid).execute();
}

/** Retired keys whose every token has expired (retired more than `retentionSeconds` ago) leave the JWKS. */
export async function deleteRetiredKeys(db: Kysely<Database>, retentionSeconds: number): Promise<string[]> {
  const rows = await db
    .deleteFrom('signing_keys')
    .where('state', '=', 'retired')
    .where(sql<boolean>`retired_at < now() - interval '1 second' * ${retentionSeconds}`)
    .returning('kid')
    .execute();
  return rows.map((row) => row.kid);
}

/** Whether the active key has signed for `intervalSeconds` and no next key waits (KEY_ROTATION_INTERVAL). */
export async function isRotationDue(db: Kysely<Database>, intervalSeconds: number): Promise<boolean> {
  const row = await db
    .selectNoFrom((eb) =>
      eb
        .and([
          eb.exists(
            eb
              .selectFrom('signing_keys')
              .select('kid')
              .where('state', '=', 'active')
              .where(sql<boolean>`coalesce(activated_at, created_at) <= now() - interval '1 second' * ${intervalSeconds}`),
          ),
          eb.not(eb.exists(eb.selectFrom('signing_keys').select('kid').where('state', '=', 'next'))),
        ])
        .as('due'),
    )
    .executeTakeFirstOrThrow();
  return row.due === true;
}

export async function updateSigningKeyCiphertext(db: Kysely<Database>, kid: string, ciphertext: string, kekId: string): Promise<void> {
  await db.updateTable('signing_keys').set({ private_key_ciphertext: ciphertext, kek_id: kekId }).where('kid', '=', kid).execute();
}
