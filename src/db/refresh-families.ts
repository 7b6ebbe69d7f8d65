import { type ExpressionBuilder, type Kysely, type QueryCreator, sql } from 'kysely';
import type { Database, FamilyRevocationReason, RefreshFamily } from './schema.js';
import { compileOnce } from './compiled.js';
import { userScopesOf } from './users.js';

/**
 * Starts a family (a session), but only if the user is still enabled and still has the password
 * that was just verified (`passwordChangedAt` as read before the verify, compared for equality:
 * changePassword always moves it). The user row is held FOR SHARE until commit, so a password
 * change or a disable either happens first (and no family is created) or waits and then ends this
 * family too, in its own transaction: a login racing "logout everywhere" cannot survive it. This
 * is what keeps a session from outliving a password change, with no clock compared. A family
 * from a code exchange holds its browser session's row the same way, so it cannot outlive a logout.
 * `firstTokenHash` is undefined for a session without refresh tokens (a client without the
 * refresh grant). Returns false when the guard fails.
 *
 * One statement, its own transaction: the guards, the family and its first token (a transaction
 * of a read and two inserts cost every login five round trips; BENCHMARKS.md, issue 17).
 */
export async function insertFamily(
  db: Kysely<Database>,
  family: FamilyToStart & { browser_session_id?: string },
  firstTokenHash: string | undefined,
  passwordChangedAt: Date,
): Promise<boolean> {
  const { rows } = await startFamily.run(db, {
    ...family,
    browser_session_id: family.browser_session_id ?? null,
    first_token_hash: firstTokenHash ?? null,
    password_changed_at: passwordChangedAt,
  });
  return rows[0]?.started === true;
}

type FamilyToStart = Omit<RefreshFamily, 'rotated_at' | 'successor_ciphertext' | 'revoked_at' | 'revoked_reason' | 'browser_session_id'>;

// Every login and code exchange runs it: compiled once (src/db/compiled.ts). The values go into
// the SELECT list of an INSERT ... SELECT, where PostgreSQL cannot infer their types: each is cast.
const startFamily = compileOnce<
  FamilyToStart & { browser_session_id: string | null; first_token_hash: string | null; password_changed_at: Date },
  { started: boolean }
>((db, value) =>
  db
    .with('guard_user', (db) =>
      db
        .selectFrom('users')
        .select('id')
        .where('id', '=', value('user_id'))
        .where('disabled', '=', false)
        // To the millisecond, as the driver read it into the Date compared here before.
        .where(sql`date_trunc('milliseconds', password_changed_at)`, '=', value('password_changed_at'))
        .forShare(),
    )
    .with('guard_session', (db) =>
      db.selectFrom('browser_sessions').select('id').where('id', '=', value('browser_session_id')).where('ended_at', 'is', null).forShare(),
    )
    .with('family', (db) =>
      db
        .insertInto('refresh_families')
        .columns(['id', 'user_id', 'client_id', 'scope', 'auth_time', 'created_at', 'expires_at', 'last_used_at', 'generation', 'browser_session_id'])
        .expression((eb) =>
          eb
            .selectFrom('guard_user')
            .select([
              sql<string>`${value('id')}::uuid`.as('id'),
              'guard_user.id as user_id',
              sql<string>`${value('client_id')}::text`.as('client_id'),
              sql<string[]>`${value('scope')}::text[]`.as('scope'),
              sql<Date>`${value('auth_time')}::timestamptz`.as('auth_time'),
              sql<Date>`${value('created_at')}::timestamptz`.as('created_at'),
              sql<Date>`${value('expires_at')}::timestamptz`.as('expires_at'),
              sql<Date>`${value('last_used_at')}::timestamptz`.as('last_used_at'),
              sql<number>`${value('generation')}::integer`.as('generation'),
              sql<string | null>`${value('browser_session_id')}::uuid`.as('browser_session_id'),
            ])
            .where((eb) =>
              eb.or([eb(sql`${value('browser_session_id')}::uuid`, 'is', null), eb.exists(eb.selectFrom('guard_session').select('guard_session.id'))]),
            ),
        )
        .returning(['id', 'generation', 'created_at']),
    )
    .with('first_token', (db) =>
      db
        .insertInto('refresh_tokens')
        .columns(['token_hash', 'family_id', 'generation', 'created_at'])
        .expression((eb) =>
          eb
            .selectFrom('family')
            .select([sql<string>`${value('first_token_hash')}::text`.as('token_hash'), 'family.id', 'family.generation', 'family.created_at'])
            .where(sql`${value('first_token_hash')}::text`, 'is not', null),
        ),
    )
    .selectNoFrom((eb) => eb.exists(eb.selectFrom('family').select('family.id')).as('started')),
);

/** A refresh token's family, with what every use of the token needs of the token itself and of its user. */
export interface TokenFamily extends RefreshFamily {
  /** The generation of the presented token (the family's `generation` is the current one). */
  readonly token_generation: number;
  readonly token_created_at: Date;
  readonly username: string;
  readonly user_disabled: boolean;
  /** What the user may have now, directly and through roles (unsorted). */
  readonly user_scopes: string[];
}

/**
 * The family of the token with this hash, with its token and user (findTokenFamily); from any
 * query creator over the schema, so that advanceCurrentToken's statement can end with it.
 */
const tokenFamilyQuery = (db: QueryCreator<Database>, tokenHash: string) =>
  db
    .selectFrom('refresh_tokens as t')
    .innerJoin('refresh_families as f', 'f.id', 't.family_id')
    .innerJoin('users as u', 'u.id', 'f.user_id')
    .selectAll('f')
    .select((eb) => [
      't.generation as token_generation',
      't.created_at as token_created_at',
      'u.username',
      'u.disabled as user_disabled',
      userScopesOf(eb.ref('u.id')).as('user_scopes'),
    ])
    .where('t.token_hash', '=', tokenHash);
// Every refresh and introspection of a refresh token runs one of these: compiled once (src/db/compiled.ts).
const findFamily = compileOnce<{ tokenHash: string }, TokenFamily>((db, value) => tokenFamilyQuery(db, value('tokenHash')));
const findFamilyAfterWriters = compileOnce<{ tokenHash: string }, TokenFamily>((db, value) =>
  tokenFamilyQuery(db, value('tokenHash')).forShare('f'),
);

/**
 * The family of the token with this hash, in one query. With `afterWriters`, a family that a write
 * holds right now (another rotation, a revocation) is read once that write has ended (FOR SHARE).
 */
export async function findTokenFamily(
  db: Kysely<Database>,
  tokenHash: string,
  options: { afterWriters?: boolean } = {},
): Promise<TokenFamily | undefined> {
  const { rows } = await (options.afterWriters ? findFamilyAfterWriters : findFamily).run(db, { tokenHash });
  return rows[0];
}

export async function findFamilyById(db: Kysely<Database>, id: string): Promise<RefreshFamily | undefined> {
  return db.selectFrom('refresh_families').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Moves the family from `fromGeneration` to the next in one statement: the new token's hash, and the
 * new token sealed for a replay by the parent's holder. A compare-and-set that never waits: if
 * another rotation of the family (on any replica) or a revocation got there first, or holds the row
 * right now, nothing changes and the answer is false. It never waits on a lock, but it can still
 * commit without its caller hearing of it: the answer lost on the way back, or the statement itself
 * held up in the network past the client's query_timeout (src/db/connect.ts) and run when it
 * arrives. A retry of the parent then gets the successor this statement sealed (src/refresh/rotation.ts).
 */
export async function advanceFamily(
  db: Kysely<Database>,
  rotation: { familyId: string; fromGeneration: number; tokenHash: string; successorCiphertext: string; now: Date },
): Promise<boolean> {
  const { numAffectedRows } = await advance.run(db, rotation);
  return (numAffectedRows ?? 0n) > 0n;
}

/** What a rotation sets on its family: the next generation, with the successor sealed for a replay by the parent's holder. */
const rotatedFamily = (successorCiphertext: string, now: Date) => (eb: ExpressionBuilder<Database, 'refresh_families'>) => ({
  generation: eb('generation', '+', 1),
  rotated_at: now,
  last_used_at: now,
  successor_ciphertext: successorCiphertext,
});

/** The successor's row, in the generation the `advanced` update (either rotation's) moved its family to. */
const insertSuccessor = (db: QueryCreator<Database & { advanced: { id: string; generation: number } }>, tokenHash: string, now: Date) =>
  db
    .insertInto('refresh_tokens')
    .columns(['token_hash', 'family_id', 'generation', 'created_at'])
    .expression((eb) =>
      eb
        .selectFrom('advanced')
        .select([sql<string>`${tokenHash}::text`.as('token_hash'), 'advanced.id', 'advanced.generation', sql<Date>`${now}::timestamptz`.as('created_at')]),
    );

// Every rotation with a scope, and every retry of one, runs it: compiled once (src/db/compiled.ts).
const advance = compileOnce<{ familyId: string; fromGeneration: number; tokenHash: string; successorCiphertext: string; now: Date }, never>((db, value) =>
  insertSuccessor(
    db.with('advanced', (db) =>
      db
        .updateTable('refresh_families')
        .set(rotatedFamily(value('successorCiphertext'), value('now')))
        .where('id', '=', (eb) =>
          eb
            .selectFrom('refresh_families')
            .select('id')
            .where('id', '=', value('familyId'))
            .where('generation', '=', value('fromGeneration'))
            .where('revoked_at', 'is', null)
            .forUpdate()
            .skipLocked(),
        )
        .returning(['id', 'generation']),
    ),
    value('tokenHash'),
    value('now'),
  ),
);

/**
 * A refresh in one round trip: reads the family of the token with this hash (as findTokenFamily
 * does) and, in the same statement, moves it on as advanceFamily does, but only if the token is
 * the current one and the family can be refreshed by this client now (its client, not revoked,
 * user enabled, before its absolute and idle deadlines: what rotation.ts's refusalReason checks).
 * The family comes back as it stood before the statement (every part of a statement sees the same
 * snapshot), with `advanced` saying whether it moved. When it did not, nothing changed and the
 * family as read says why (or an unknown token reads nothing): the caller goes on as after a read.
 * The write is advanceFamily's compare-and-set, FOR UPDATE SKIP LOCKED: it never waits.
 */
export async function advanceCurrentToken(
  db: Kysely<Database>,
  rotation: { tokenHash: string; clientId: string; successorHash: string; successorCiphertext: string; now: Date; idleSince: Date },
): Promise<{ family: TokenFamily | undefined; advanced: boolean }> {
  const { rows } = await advanceCurrent.run(db, rotation);
  const row = rows[0];
  if (row === undefined) return { family: undefined, advanced: false };
  const { advanced, ...family } = row;
  return { family, advanced };
}

// Every refresh without a `scope` runs it: compiled once (src/db/compiled.ts). Its text starts as
// advanceFamily's does (`with "advanced" as`): the rotation's write, wherever a test or an
// operator looks for it.
const advanceCurrent = compileOnce<
  { tokenHash: string; clientId: string; successorHash: string; successorCiphertext: string; now: Date; idleSince: Date },
  TokenFamily & { advanced: boolean }
>((db, value) => {
  const rotating = db
    .with('advanced', (db) =>
      db
        .updateTable('refresh_families')
        .set(rotatedFamily(value('successorCiphertext'), value('now')))
        .where('id', '=', (eb) =>
          eb
            .selectFrom('refresh_tokens as t')
            .innerJoin('refresh_families as f', 'f.id', 't.family_id')
            .innerJoin('users as u', 'u.id', 'f.user_id')
            .select('f.id')
            .where('t.token_hash', '=', value('tokenHash'))
            .whereRef('f.generation', '=', 't.generation')
            .where('f.client_id', '=', value('clientId'))
            .where('f.revoked_at', 'is', null)
            .where('u.disabled', '=', false)
            .where('f.expires_at', '>', value('now'))
            .where('f.last_used_at', '>', value('idleSince'))
            .forUpdate('f')
            .skipLocked(),
        )
        .returning(['id', 'generation']),
    )
    .with('inserted', (db) => insertSuccessor(db, value('successorHash'), value('now')));
  return tokenFamilyQuery(rotating, value('tokenHash')).select(sql<boolean>`exists (select from "advanced")`.as('advanced'));
});

export async function revokeFamily(db: Kysely<Database>, familyId: string, reason: FamilyRevocationReason, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('refresh_families')
    .set({ revoked_at: now, revoked_reason: reason, successor_ciphertext: null })
    .where('id', '=', familyId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Logout everywhere: every live family of the user. Returns how many ended. */
export async function revokeUserFamilies(db: Kysely<Database>, userId: string, reason: FamilyRevocationReason, now: Date): Promise<number> {
  const result = await db
    .updateTable('refresh_families')
    .set({ revoked_at: now, revoked_reason: reason, successor_ciphertext: null })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/**
 * A page of the user's families, newest first; `after` is the id of the last family of the
 * previous page (created_at ties are broken by id, so the order is total and no family is skipped).
 */
export async function pageUserFamilies(
  db: Kysely<Database>,
  userId: string,
  page: { readonly limit: number; readonly after?: string | undefined },
): Promise<RefreshFamily[]> {
  return pageFamilies(db, { userId }, page);
}

/**
 * A page of sessions (families), newest first, of a user and/or a client: after the family `after`
 * (an id, as the first form of these pages said), or after the position (created_at, id).
 */
export async function pageFamilies(
  db: Kysely<Database>,
  filter: { readonly userId?: string | undefined; readonly clientId?: string | undefined },
  page: { readonly limit: number; readonly after?: string | undefined; readonly afterPosition?: { readonly createdAt: Date; readonly id: string } | undefined },
): Promise<RefreshFamily[]> {
  let query = db.selectFrom('refresh_families').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit);
  if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
  if (filter.clientId !== undefined) query = query.where('client_id', '=', filter.clientId);
  if (page.after !== undefined) {
    // Another user's session names no place in this user's list: the page is empty.
    const owner = filter.userId === undefined ? sql`true` : sql`f.user_id = ${filter.userId}`;
    query = query.where(sql<boolean>`(created_at, id) < (select f.created_at, f.id from refresh_families f where f.id = ${page.after} and ${owner})`);
  }
  const position = page.afterPosition;
  if (position !== undefined) query = query.where(sql<boolean>`(created_at, id) < (${position.createdAt}::timestamptz, ${position.id}::uuid)`);
  return query.execute();
}

/**
 * Deletes up to `batchSize` families that can never be used again: past their absolute lifetime,
 * or idle too long. Revoked families are kept until then, so that a stolen token replayed after a
 * revocation is still recognised (and logged) as a token of a revoked family. SKIP LOCKED passes
 * over any family a refresh holds right now, so housekeeping never waits on (or delays) live
 * traffic. Tokens go with their family (cascade).
 */
export async function purgeDeadFamilies(db: Kysely<Database>, now: Date, idleTtlSeconds: number, batchSize: number): Promise<number> {
  const idleCutoff = new Date(now.getTime() - idleTtlSeconds * 1000);
  const result = await db
    .deleteFrom('refresh_families')
    .where(
      'id',
      'in',
      db
        .selectFrom('refresh_families')
        .select('id')
        .where((eb) => eb.or([eb('expires_at', '<=', now), eb('last_used_at', '<=', idleCutoff)]))
        .limit(batchSize)
        .modifyEnd(sql`for update skip locked`),
    )
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
