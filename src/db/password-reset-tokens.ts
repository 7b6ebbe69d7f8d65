import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

/** Who a reset request names: a normalised username, or an email compared as the unique index does (lower). */
export type ResetLookup = { readonly username: string } | { readonly emailKey: string };

/**
 * Stores a reset token for the user `lookup` names, if that user exists, is enabled and has a
 * verified email; returns where to send it, or undefined. One statement whatever the answer (an
 * INSERT ... SELECT that inserts nothing for anyone else), so that an unknown name costs the
 * database what a known one does.
 */
export async function insertResetToken(
  db: Kysely<Database>,
  lookup: ResetLookup,
  token: { readonly tokenHash: string; readonly now: Date; readonly expiresAt: Date },
): Promise<{ user_id: string; email: string; username: string } | undefined> {
  const match = 'username' in lookup ? sql`u.username = ${lookup.username}` : sql`lower(u.email) = ${lookup.emailKey}`;
  const { rows } = await sql<{ user_id: string; email: string; username: string }>`
    with inserted as (
      insert into password_reset_tokens (token_hash, user_id, created_at, expires_at)
      select ${token.tokenHash}, u.id, ${token.now}::timestamptz, ${token.expiresAt}::timestamptz
      from users u
      where ${match} and not u.disabled and u.email is not null and u.email_verified
      returning user_id
    )
    select i.user_id, u.email, u.username from inserted i join users u on u.id = i.user_id`.execute(db);
  return rows[0];
}

/** The unused, unexpired token with this hash: which user it is for, or undefined. Reads only. */
export async function findLiveResetToken(db: Kysely<Database>, tokenHash: string, now: Date): Promise<{ user_id: string } | undefined> {
  return db
    .selectFrom('password_reset_tokens')
    .select('user_id')
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
}

/**
 * Uses the token: marks it, and every other unused token of its user, as used, if it is still
 * unused and unexpired (a compare-and-set: of two confirmations racing, one wins). Returns its
 * user, or undefined when it could not be used.
 */
export async function useResetToken(db: Kysely<Database>, tokenHash: string, now: Date): Promise<{ user_id: string } | undefined> {
  const used = await db
    .updateTable('password_reset_tokens')
    .set({ used_at: now })
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returning('user_id')
    .executeTakeFirst();
  if (used === undefined) return undefined;
  await db
    .updateTable('password_reset_tokens')
    .set({ used_at: now })
    .where('user_id', '=', used.user_id)
    .where('used_at', 'is', null)
    .execute();
  return used;
}

/** Tokens that can never be used again (expired, or used, a day after): for the purge. */
export async function purgeResetTokens(db: Kysely<Database>, now: Date): Promise<number> {
  const dayAgo = new Date(now.getTime() - 86_400_000);
  const result = await db
    .deleteFrom('password_reset_tokens')
    .where((eb) => eb.or([eb('expires_at', '<=', dayAgo), eb('used_at', '<=', dayAgo)]))
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
