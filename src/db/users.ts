import { type Kysely, sql } from 'kysely';
import type { Database, NewUser, User } from './schema.js';

export async function findUserByUsername(db: Kysely<Database>, username: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
}

export async function findUserById(db: Kysely<Database>, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function insertUser(db: Kysely<Database>, user: NewUser): Promise<User> {
  return db.insertInto('users').values(user).returningAll().executeTakeFirstOrThrow();
}

export async function countUsers(db: Kysely<Database>): Promise<number> {
  const row = await db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('count')).executeTakeFirstOrThrow();
  return Number(row.count);
}

export async function listUsers(
  db: Kysely<Database>,
  page: { readonly limit: number; readonly after?: string | undefined },
): Promise<User[]> {
  let query = db.selectFrom('users').selectAll().orderBy('username').limit(page.limit);
  if (page.after !== undefined) query = query.where('username', '>', page.after);
  return query.execute();
}

/** Rehash on login: the password is unchanged, so sessions stay and password_changed_at does not move. */
export async function updatePasswordHash(db: Kysely<Database>, id: string, hash: string, now: Date): Promise<void> {
  await db.updateTable('users').set({ password_hash: hash, updated_at: now }).where('id', '=', id).execute();
}

/** A new password chosen by the user or set by an operator. */
export async function changePassword(db: Kysely<Database>, id: string, hash: string, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('users')
    .set({ password_hash: hash, password_changed_at: now, updated_at: now })
    .where('id', '=', id)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function setUserDisabled(db: Kysely<Database>, id: string, disabled: boolean, now: Date): Promise<boolean> {
  const result = await db.updateTable('users').set({ disabled, updated_at: now }).where('id', '=', id).executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function deleteUser(db: Kysely<Database>, id: string): Promise<boolean> {
  const result = await db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** A user's grantable scopes: the scopes of their roles plus those granted to them directly (DESIGN.md, Scopes). */
export async function findUserScopes(db: Kysely<Database>, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('user_scopes')
    .select('scope')
    .where('user_id', '=', userId)
    .union(
      db
        .selectFrom('user_roles')
        .innerJoin('role_scopes', 'role_scopes.role_name', 'user_roles.role_name')
        .select('role_scopes.scope')
        .where('user_roles.user_id', '=', userId),
    )
    .execute();
  return rows.map((row) => row.scope).sort();
}

export async function findUserRoles(db: Kysely<Database>, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('user_roles').select('role_name').where('user_id', '=', userId).orderBy('role_name').execute();
  return rows.map((row) => row.role_name);
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

export async function revokeUserScopes(db: Kysely<Database>, userId: string, scopes: readonly string[]): Promise<void> {
  if (scopes.length === 0) return;
  await db.deleteFrom('user_scopes').where('user_id', '=', userId).where('scope', 'in', scopes).execute();
}

/** Lower-cost existence probe used by readiness. */
export async function pingDatabase(db: Kysely<Database>): Promise<void> {
  await sql`select 1`.execute(db);
}
