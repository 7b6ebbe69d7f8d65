import { type Kysely, sql } from 'kysely';
import type { BrowserSession, Database } from './schema.js';
import { inTransaction } from './transaction.js';

/** A browser session with what every use of it needs to know of its user. */
export interface LiveBrowserSession extends BrowserSession {
  readonly username: string;
}

/**
 * Starts a browser session, but only while the user is enabled and still has the password that
 * was just verified (as insertFamily guards a login): a password change or a disable racing the
 * sign-in either comes first, or comes after and ends this session by changing what it compares.
 */
export async function insertBrowserSession(db: Kysely<Database>, session: Omit<BrowserSession, 'ended_at'>): Promise<boolean> {
  const result = await db
    .insertInto('browser_sessions')
    .columns(['id', 'token_hash', 'user_id', 'password_changed_at', 'auth_time', 'created_at', 'expires_at'])
    .expression((eb) =>
      eb
        .selectFrom('users')
        .select([
          sql.val(session.id).as('id'),
          sql.val(session.token_hash).as('token_hash'),
          'users.id as user_id',
          'users.password_changed_at',
          sql.val(session.auth_time).as('auth_time'),
          sql.val(session.created_at).as('created_at'),
          sql.val(session.expires_at).as('expires_at'),
        ])
        .where('users.id', '=', session.user_id)
        .where('users.disabled', '=', false)
        .where('users.password_changed_at', '=', session.password_changed_at),
    )
    .executeTakeFirst();
  return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
}

/**
 * The session whose cookie hashes to `tokenHash`, if it still stands at `now`: not ended, not
 * expired, its user enabled and with the same password as at sign-in. One query.
 */
export async function findLiveBrowserSession(db: Kysely<Database>, tokenHash: string, now: Date): Promise<LiveBrowserSession | undefined> {
  return db
    .selectFrom('browser_sessions as s')
    .innerJoin('users as u', 'u.id', 's.user_id')
    .selectAll('s')
    .select('u.username')
    .where('s.token_hash', '=', tokenHash)
    .where('s.ended_at', 'is', null)
    .where('s.expires_at', '>', now)
    .where('u.disabled', '=', false)
    .whereRef('u.password_changed_at', '=', 's.password_changed_at')
    .executeTakeFirst();
}

export async function findBrowserSessionById(db: Kysely<Database>, id: string): Promise<BrowserSession | undefined> {
  return db.selectFrom('browser_sessions').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Ends the session and, in the same transaction, every refresh family its codes started
 * (RP-initiated logout). Returns the families ended; none if the session had already ended.
 */
export async function endBrowserSession(db: Kysely<Database>, id: string, now: Date): Promise<string[]> {
  return inTransaction(db, async (trx) => {
    await trx.updateTable('browser_sessions').set({ ended_at: now }).where('id', '=', id).where('ended_at', 'is', null).execute();
    const ended = await trx
      .updateTable('refresh_families')
      .set({ revoked_at: now, revoked_reason: 'logout', successor_ciphertext: null })
      .where('browser_session_id', '=', id)
      .where('revoked_at', 'is', null)
      .returning('id')
      .execute();
    return ended.map((row) => row.id);
  });
}

/**
 * The same user signed in again in this browser (prompt=login, max_age): the old session ends and
 * the live families its codes started go on under the new one, so that a later logout still ends
 * them. Returns the families handed over.
 */
export async function handOverBrowserSession(db: Kysely<Database>, previousId: string, nextId: string, now: Date): Promise<string[]> {
  return inTransaction(db, async (trx) => {
    await trx.updateTable('browser_sessions').set({ ended_at: now }).where('id', '=', previousId).where('ended_at', 'is', null).execute();
    const moved = await trx
      .updateTable('refresh_families')
      .set({ browser_session_id: nextId })
      .where('browser_session_id', '=', previousId)
      .where('revoked_at', 'is', null)
      .returning('id')
      .execute();
    return moved.map((row) => row.id);
  });
}

/** Deletes up to `batchSize` sessions past their lifetime (codes go with them: cascade). */
export async function purgeDeadBrowserSessions(db: Kysely<Database>, now: Date, batchSize: number): Promise<number> {
  const result = await db
    .deleteFrom('browser_sessions')
    .where('id', 'in', db.selectFrom('browser_sessions').select('id').where('expires_at', '<=', now).limit(batchSize))
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Logout everywhere: every live browser session of the user ends (their families are ended by the caller). */
export async function endUserBrowserSessions(db: Kysely<Database>, userId: string, now: Date): Promise<number> {
  const result = await db.updateTable('browser_sessions').set({ ended_at: now }).where('user_id', '=', userId).where('ended_at', 'is', null).executeTakeFirst();
  return Number(result.numUpdatedRows);
}
