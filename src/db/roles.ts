import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

export interface RoleWithScopes {
  readonly name: string;
  readonly description: string;
  readonly scopes: string[];
}

export async function insertRole(db: Kysely<Database>, name: string, description: string): Promise<void> {
  await db.insertInto('roles').values({ name, description }).execute();
}

export async function deleteRole(db: Kysely<Database>, name: string): Promise<boolean> {
  const result = await db.deleteFrom('roles').where('name', '=', name).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

export async function listRoles(db: Kysely<Database>): Promise<RoleWithScopes[]> {
  const [roles, scopes] = await Promise.all([
    db.selectFrom('roles').select(['name', 'description']).orderBy('name').execute(),
    db.selectFrom('role_scopes').select(['role_name', 'scope']).orderBy('scope').execute(),
  ]);
  return roles.map((role) => ({
    ...role,
    scopes: scopes.filter((row) => row.role_name === role.name).map((row) => row.scope),
  }));
}

/** A page of roles in name order after `after`, each with its scopes. */
export async function pageRoles(db: Kysely<Database>, page: { readonly limit: number; readonly after?: string | undefined }): Promise<RoleWithScopes[]> {
  let query = db.selectFrom('roles').select(['name', 'description']).orderBy('name').limit(page.limit);
  if (page.after !== undefined) query = query.where('name', '>', page.after);
  const roles = await query.execute();
  if (roles.length === 0) return [];
  const scopes = await db
    .selectFrom('role_scopes')
    .select(['role_name', 'scope'])
    .where('role_name', 'in', roles.map((role) => role.name))
    .orderBy('scope')
    .execute();
  return roles.map((role) => ({ ...role, scopes: scopes.filter((row) => row.role_name === role.name).map((row) => row.scope) }));
}

export async function findRole(db: Kysely<Database>, name: string): Promise<RoleWithScopes | undefined> {
  const role = await db.selectFrom('roles').select(['name', 'description']).where('name', '=', name).executeTakeFirst();
  if (role === undefined) return undefined;
  const scopes = await db.selectFrom('role_scopes').select('scope').where('role_name', '=', name).orderBy('scope').execute();
  return { ...role, scopes: scopes.map((row) => row.scope) };
}

/** Which of these role names exist. */
export async function findExistingRoles(db: Kysely<Database>, names: readonly string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const rows = await db.selectFrom('roles').select('name').where('name', 'in', names).execute();
  return rows.map((row) => row.name);
}

export async function updateRoleDescription(db: Kysely<Database>, name: string, description: string): Promise<boolean> {
  const result = await db.updateTable('roles').set({ description }).where('name', '=', name).executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** The role's scopes become exactly these (inside the caller's transaction). */
export async function replaceRoleScopes(db: Kysely<Database>, role: string, scopes: readonly string[]): Promise<void> {
  await db.deleteFrom('role_scopes').where('role_name', '=', role).execute();
  await addRoleScopes(db, role, scopes);
}

export async function addRoleScopes(db: Kysely<Database>, role: string, scopes: readonly string[]): Promise<void> {
  if (scopes.length === 0) return;
  await db
    .insertInto('role_scopes')
    .values(scopes.map((scope) => ({ role_name: role, scope })))
    .onConflict((oc) => oc.doNothing())
    .execute();
}

export async function removeRoleScopes(db: Kysely<Database>, role: string, scopes: readonly string[]): Promise<void> {
  if (scopes.length === 0) return;
  await db.deleteFrom('role_scopes').where('role_name', '=', role).where('scope', 'in', scopes).execute();
}

export async function addUserRole(db: Kysely<Database>, userId: string, role: string): Promise<void> {
  await db.insertInto('user_roles').values({ user_id: userId, role_name: role }).onConflict((oc) => oc.doNothing()).execute();
}

export async function removeUserRole(db: Kysely<Database>, userId: string, role: string): Promise<void> {
  await db.deleteFrom('user_roles').where('user_id', '=', userId).where('role_name', '=', role).execute();
}

/** The user's roles become exactly these (inside the caller's transaction). */
export async function replaceUserRoles(db: Kysely<Database>, userId: string, roles: readonly string[]): Promise<void> {
  await db.deleteFrom('user_roles').where('user_id', '=', userId).execute();
  if (roles.length === 0) return;
  await db
    .insertInto('user_roles')
    .values(roles.map((role) => ({ user_id: userId, role_name: role })))
    .onConflict((oc) => oc.doNothing())
    .execute();
}
