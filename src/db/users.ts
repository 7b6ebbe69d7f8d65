import { type Expression, type Kysely, sql } from 'kysely';
import { compileOnce } from './compiled.js';
import type { Database, NewUser, User, UserUpdate } from './schema.js';

export async function findUserByUsername(db: Kysely<Database>, username: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
}

/** A user who is logging in, with the user's scopes (direct and through roles, sorted). */
export type LoginUser = User & { readonly scopes: string[] };

/**
 * The user a login names, and the user's scopes, in one query: a password grant needs both, and
 * each round trip of a login costs its main thread more while Argon2id runs beside it
 * (BENCHMARKS.md). The scopes are read before the password is verified; they are never used unless it is right.
 */
export async function findLoginUser(db: Kysely<Database>, username: string): Promise<LoginUser | undefined> {
  const { rows } = await loginUser.run(db, { username });
  rows[0]?.scopes.sort();
  return rows[0];
}
// Every login runs it: compiled once (src/db/compiled.ts).
const loginUser = compileOnce<{ username: string }, LoginUser>((db, value) =>
  db
    .selectFrom('users')
    .selectAll()
    .select((eb) => userScopesOf(eb.ref('users.id')).as('scopes'))
    .where('username', '=', value('username')),
);

export async function findUserById(db: Kysely<Database>, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/** A user with whether the session `sid` (a refresh family) is still live: false for a token without one. */
export type UserSession = User & { readonly session_live: boolean };
/** And the user's roles and effective scopes (direct and through roles), sorted. */
export type UserProfile = UserSession & { readonly roles: string[]; readonly scopes: string[] };

/**
 * The user, and whether the session `sid` is still live, in one query: what every use of a user's
 * access token at Tessera asks. Undefined if there is no such user.
 */
export async function findUserSession(db: Kysely<Database>, userId: string, sid: string | undefined): Promise<UserSession | undefined> {
  const { rows } = await userSession.run(db, { userId, sid: sid ?? null });
  return rows[0];
}

/** findUserSession with the roles and scopes /userinfo shows: still one query. */
export async function findUserProfile(db: Kysely<Database>, userId: string, sid: string | undefined): Promise<UserProfile | undefined> {
  const { rows } = await userProfile.run(db, { userId, sid: sid ?? null });
  const row = rows[0];
  return row && { ...row, scopes: row.scopes.sort() };
}

type SessionKey = { userId: string; sid: string | null };

function userSessionQuery(db: Kysely<Database>, value: <K extends keyof SessionKey>(name: K) => SessionKey[K]) {
  return db
    .selectFrom('users')
    .selectAll('users')
    .select((eb) =>
      // Every user access token Tessera issues names its session (`sid`, a refresh family, with or
      // without refresh tokens), and every way a session ends (logout, password change, disable)
      // revokes that row, and deleting the user deletes it: so liveness is one look-up, with no
      // clock compared. A token without `sid` (only the previous release issued such user
      // tokens) is not live here: it names no session that a logout could end (`f.id = null`
      // holds for no row).
      eb
        .exists(
          eb
            .selectFrom('refresh_families as f')
            .select('f.id')
            .where('f.id', '=', value('sid'))
            .whereRef('f.user_id', '=', 'users.id')
            .where('f.revoked_at', 'is', null),
        )
        .as('session_live'),
    )
    .where('id', '=', value('userId'));
}

// Every use of a user's access token at Tessera runs one of these: compiled once (src/db/compiled.ts).
const userSession = compileOnce<SessionKey, UserSession>((db, value) => userSessionQuery(db, value));
const userProfile = compileOnce<SessionKey, UserProfile>((db, value) =>
  userSessionQuery(db, value).select((eb) => [
    sql<string[]>`array(select role_name from user_roles where user_id = ${eb.ref('users.id')} order by role_name)`.as('roles'),
    userScopesOf(eb.ref('users.id')).as('scopes'),
  ]),
);

export async function insertUser(db: Kysely<Database>, user: NewUser): Promise<User> {
  return db.insertInto('users').values(user).returningAll().executeTakeFirstOrThrow();
}

export async function countUsers(db: Kysely<Database>): Promise<number> {
  const row = await db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('count')).executeTakeFirstOrThrow();
  return Number(row.count);
}

/** What a listing of users keeps; every member narrows it. */
export interface UserFilter {
  /** Usernames that contain it (compared as plain text: LIKE's `%`, `_` and `\` match only themselves). */
  readonly search?: string | undefined;
  readonly disabled?: boolean | undefined;
  /** Holders of this role. */
  readonly role?: string | undefined;
  /** Created strictly before / at or after. */
  readonly createdBefore?: Date | undefined;
  readonly createdAfter?: Date | undefined;
}

/** A page of users in username order, after the username `after`. */
export async function listUsers(
  db: Kysely<Database>,
  page: { readonly limit: number; readonly after?: string | undefined } & UserFilter,
): Promise<User[]> {
  let query = db.selectFrom('users').selectAll().orderBy('username').limit(page.limit);
  if (page.after !== undefined) query = query.where('username', '>', page.after);
  if (page.search !== undefined && page.search !== '') {
    query = query.where(sql<boolean>`username like ${`%${escapeLike(page.search)}%`} escape '\\'`);
  }
  if (page.disabled !== undefined) query = query.where('disabled', '=', page.disabled);
  const role = page.role;
  if (role !== undefined) {
    query = query.where((eb) =>
      eb.exists(eb.selectFrom('user_roles').select('user_roles.user_id').whereRef('user_roles.user_id', '=', 'users.id').where('user_roles.role_name', '=', role)),
    );
  }
  if (page.createdBefore !== undefined) query = query.where('created_at', '<', page.createdBefore);
  if (page.createdAfter !== undefined) query = query.where('created_at', '>=', page.createdAfter);
  return query.execute();
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}

/** Rehash on login: the password is unchanged, so sessions stay and password_changed_at does not move. */
export async function updatePasswordHash(db: Kysely<Database>, id: string, hash: string, now: Date): Promise<void> {
  await db.updateTable('users').set({ password_hash: hash, updated_at: now }).where('id', '=', id).execute();
}

/**
 * A new password chosen by the user or set by an operator. password_changed_at always moves, even
 * when this host's clock reads the same instant as (or one before) the last change: a login
 * compares it for equality with the value it read before verifying the password (insertFamily),
 * so it must differ after every change.
 */
export async function changePassword(db: Kysely<Database>, id: string, hash: string, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('users')
    .set({
      password_hash: hash,
      password_changed_at: sql<Date>`greatest(${now}::timestamptz, password_changed_at + interval '1 millisecond')`,
      updated_at: now,
    })
    .where('id', '=', id)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Email, email_verified, name and attributes (as JSON text), as given: src/auth/accounts.ts checks them. */
export async function updateUserProfile(
  db: Kysely<Database>,
  id: string,
  profile: Pick<UserUpdate, 'email' | 'email_verified' | 'name' | 'attributes'>,
): Promise<Pick<User, 'email' | 'email_verified'> | undefined> {
  return db.updateTable('users').set(profile).where('id', '=', id).returning(['email', 'email_verified']).executeTakeFirst();
}

export async function setUserDisabled(db: Kysely<Database>, id: string, disabled: boolean, now: Date): Promise<boolean> {
  const result = await db.updateTable('users').set({ disabled, updated_at: now }).where('id', '=', id).executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** A change to what a user may do (scopes, roles) moves updated_at, as userinfo reports it. */
export async function touchUser(db: Kysely<Database>, id: string, now: Date): Promise<boolean> {
  const result = await db.updateTable('users').set({ updated_at: now }).where('id', '=', id).executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function deleteUser(db: Kysely<Database>, id: string): Promise<boolean> {
  const result = await db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** A user's grantable scopes: the scopes of their roles plus those granted to them directly (DESIGN.md, Scopes). */
/**
 * A user's scopes, direct and through roles, as one text[] value: for queries that need them beside
 * other rows (a refresh reads them with the token's family, a login with the user), and for findUserScopes.
 */
export function userScopesOf(userId: Expression<string> | string) {
  const id = typeof userId === 'string' ? sql`${userId}` : userId;
  return sql<string[]>`array(select scope from user_scopes where user_id = ${id} union select rs.scope from user_roles ur join role_scopes rs on rs.role_name = ur.role_name where ur.user_id = ${id})`;
}

export async function findUserScopes(db: Kysely<Database>, userId: string): Promise<string[]> {
  const { rows } = await userScopes.run(db, { userId });
  return rows[0]!.scopes.sort();
}
// Every code exchange runs it: compiled once (src/db/compiled.ts).
const userScopes = compileOnce<{ userId: string }, { scopes: string[] }>((db, value) => db.selectNoFrom(userScopesOf(sql<string>`${value('userId')}`).as('scopes')));

export async function findUserRoles(db: Kysely<Database>, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('user_roles').select('role_name').where('user_id', '=', userId).orderBy('role_name').execute();
  return rows.map((row) => row.role_name);
}

/** What the claims a client maps are read from (src/auth/token-claims.ts): attributes and role names, in one query. */
export async function findUserClaimSource(
  db: Kysely<Database>,
  userId: string,
): Promise<{ attributes: User['attributes']; roles: string[] } | undefined> {
  return db
    .selectFrom('users')
    .select((eb) => [
      'attributes',
      sql<string[]>`array(select role_name from user_roles where user_id = ${eb.ref('users.id')} order by role_name)`.as('roles'),
    ])
    .where('id', '=', userId)
    .executeTakeFirst();
}

export async function findDirectUserScopes(db: Kysely<Database>, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('user_scopes').select('scope').where('user_id', '=', userId).orderBy('scope').execute();
  return rows.map((row) => row.scope);
}

export async function grantUserScopes(db: Kysely<Database>, userId: string, scopes: readonly string[]): Promise<void> {
  if (scopes.length === 0) return;
  await db
    .insertInto('user_scopes')
    .values(scopes.map((scope) => ({ user_id: userId, scope })))
    .onConflict((oc) => oc.doNothing())
    .execute();
}

/** The user's direct scopes become exactly these (inside the caller's transaction). */
export async function replaceUserScopes(db: Kysely<Database>, userId: string, scopes: readonly string[]): Promise<void> {
  await db.deleteFrom('user_scopes').where('user_id', '=', userId).execute();
  await grantUserScopes(db, userId, scopes);
}

/** Roles and direct scopes of many users at once (a page of a listing), each list sorted. */
export async function findAccessOfUsers(
  db: Kysely<Database>,
  userIds: readonly string[],
): Promise<Map<string, { roles: string[]; scopes: string[] }>> {
  const access = new Map(userIds.map((id) => [id, { roles: [] as string[], scopes: [] as string[] }]));
  if (userIds.length === 0) return access;
  const [roles, scopes] = await Promise.all([
    db.selectFrom('user_roles').select(['user_id', 'role_name']).where('user_id', 'in', userIds).orderBy('role_name').execute(),
    db.selectFrom('user_scopes').select(['user_id', 'scope']).where('user_id', 'in', userIds).orderBy('scope').execute(),
  ]);
  for (const row of roles) access.get(row.user_id)?.roles.push(row.role_name);
  for (const row of scopes) access.get(row.user_id)?.scopes.push(row.scope);
  return access;
}

export async function revokeUserScopes(db: Kysely<Database>, userId: string, scopes: readonly string[]): Promise<void> {
  if (scopes.length === 0) return;
  await db.deleteFrom('user_scopes').where('user_id', '=', userId).where('scope', 'in', scopes).execute();
}

/** Lower-cost existence probe used by readiness. */
export async function pingDatabase(db: Kysely<Database>): Promise<void> {
  await sql`select 1`.execute(db);
}

/** Whether the user exists, is enabled and holds `scope` (directly or through a role). */
export async function userHoldsScope(db: Kysely<Database>, userId: string, scope: string): Promise<boolean> {
  const row = await db
    .selectNoFrom(
      sql<boolean>`exists(select 1 from users where id = ${userId} and not disabled and ${scope} = any(${userScopesOf(userId)}))`.as('holds'),
    )
    .executeTakeFirstOrThrow();
  return row.holds;
}
