import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';
import { inTransaction } from './transaction.js';

/** Who a reset request names: a normalised username, or an email compared as the unique index does (lower). */
export type ResetLookup = { readonly username: string } | { readonly emailKey: string };

/**
 * Stores a reset token for the user `lookup` names, if that user exists, is enabled and has a
 * verified email; returns where to send it, or undefined. The same work whatever the answer, so
 * that an unknown name costs what a known one does: one transaction with the same two
 * statements, an INSERT that writes the token for the user or, for nobody, a row without a user,
 * and a DELETE of that row without a user. Either way a row is written and the commit waits for
 * the write-ahead log, which a transaction that wrote nothing would not (about a millisecond:
 * enough to tell the two apart over many requests).
 */
export async function insertResetToken(
  db: Kysely<Database>,
  lookup: ResetLookup,
  token: { readonly tokenHash: string; readonly now: Date; readonly expiresAt: Date },
): Promise<{ user_id: string; email: string; username: string } | undefined> {
  const match = 'username' in lookup ? sql`u.username = ${lookup.username}` : sql`lower(u.email) = ${lookup.emailKey}`;
  return inTransaction(db, async (trx) => {
    const { rows } = await sql<{ user_id: string | null; email: string | null; username: string | null }>`
      with target as (
        select u.id, u.email, u.username from users u
        where ${match} and not u.disabled and u.email is not null and u.email_verified
      ), inserted as (
        insert into password_reset_tokens (token_hash, user_id, created_at, expires_at)
        select ${token.tokenHash}, t.id, ${token.now}::timestamptz, ${token.expiresAt}::timestamptz
        from (select 1) one left join target t on true
        returning user_id
      )
      select i.user_id, t.email, t.username from inserted i left join target t on t.id = i.user_id`.execute(trx);
    await trx.deleteFrom('password_reset_tokens').where('token_hash', '=', token.tokenHash).where('user_id', 'is', null).execute();
    const row = rows[0];
    return row?.user_id == null || row.email === null || row.username === null
      ? undefined
      : { user_id: row.user_id, email: row.email, username: row.username };
  });
}

/** The unused, unexpired token with this hash: which user it is for, or undefined. Reads only. */
export async function findLiveResetToken(db: Kysely<Database>, tokenHash: string, now: Date): Promise<{ user_id: string } | undefined> {
  const row = await db
    .selectFrom('password_reset_tokens')
    .select('user_id')
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return row?.user_id == null ? undefined : { user_id: row.user_id };
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
    .where('user_id', 'is not', null)
    .returning('user_id')
    .executeTakeFirst();
  if (used?.user_id == null) return undefined;
  await endUserResetTokens(db, used.user_id, now);
  return { user_id: used.user_id };
}

/**
 * Uses up every unused token of the user: a link mailed before the password, the address or the
 * account's standing changed must not outlive that change (it went to the old address, or was
 * asked for by whoever the change was meant to shut out).
 */
export async function endUserResetTokens(db: Kysely<Database>, userId: string, now: Date): Promise<void> {
  await db.updateTable('password_reset_tokens').set({ used_at: now }).where('user_id', '=', userId).where('used_at', 'is', null).execute();
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
