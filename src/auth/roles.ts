import type { Kysely } from 'kysely';
import { isForeignKeyViolation, isUniqueViolation } from '../db/errors.js';
import {
  addRoleScopes,
  deleteRole,
  findRole,
  insertRole,
  removeRoleScopes,
  replaceRoleScopes,
  type RoleWithScopes,
  updateRoleDescription,
} from '../db/roles.js';
import type { Database } from '../db/schema.js';
import { inTransaction } from '../db/transaction.js';
import { hasControlCharacters } from './passwords.js';
import { checkScopeList } from './scopes.js';

/** `invalid_role`: the input is malformed (a usage error in the CLI, a 400 over HTTP). */
export type RoleErrorCode = 'invalid_role' | 'role_exists' | 'not_found';

/** A rule about roles was broken; the message is safe to show to whoever asked. */
export class RoleError extends Error {
  constructor(
    readonly code: RoleErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RoleError';
  }
}

const ROLE_NAME = /^[A-Za-z0-9._:-]{1,64}$/;
const MAX_DESCRIPTION_LENGTH = 500;

/** Role names travel in URLs (/admin/roles/:name) and CLI arguments: a short, plain alphabet. */
export function isValidRoleName(name: string): boolean {
  return ROLE_NAME.test(name);
}

export interface NewRole {
  readonly name: string;
  readonly description?: string | undefined;
  readonly scopes?: readonly string[] | undefined;
}

export async function createRole(db: Kysely<Database>, input: NewRole): Promise<RoleWithScopes> {
  const badName = checkRoleName(input.name);
  if (badName !== undefined) throw new RoleError('invalid_role', badName);
  const description = checkedDescription(input.description ?? '');
  const scopes = checkedScopes(input.scopes ?? []);
  try {
    return await inTransaction(db, async (trx) => {
      await insertRole(trx, input.name, description);
      await addRoleScopes(trx, input.name, scopes);
      return requireRole(trx, input.name);
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new RoleError('role_exists', `the role ${input.name} already exists`);
    throw error;
  }
}

export interface RoleChanges {
  readonly description?: string | undefined;
  /** Replaces the role's scopes. */
  readonly scopes?: readonly string[] | undefined;
}

/** Every user holding the role gains or loses its scopes at their next login or refresh. */
export async function updateRole(db: Kysely<Database>, name: string, changes: RoleChanges): Promise<RoleWithScopes> {
  const description = changes.description === undefined ? undefined : checkedDescription(changes.description);
  const scopes = changes.scopes === undefined ? undefined : checkedScopes(changes.scopes);
  return changeExistingRole(db, name, async (trx) => {
    if (description !== undefined) await updateRoleDescription(trx, name, description);
    if (scopes !== undefined) await replaceRoleScopes(trx, name, scopes);
  });
}

/** Adds or removes some scopes of a role (`tessera roles add-scope|remove-scope`). */
export async function changeRoleScopes(db: Kysely<Database>, name: string, scopes: readonly string[], add: boolean): Promise<RoleWithScopes> {
  const checked = checkedScopes(scopes);
  return changeExistingRole(db, name, (trx) => (add ? addRoleScopes : removeRoleScopes)(trx, name, checked));
}

/** Users holding the role lose it (and its scopes) with it. */
export async function removeRole(db: Kysely<Database>, name: string): Promise<void> {
  if (!isValidRoleName(name) || !(await deleteRole(db, name))) throw noSuchRole(name);
}

export async function requireRole(db: Kysely<Database>, name: string): Promise<RoleWithScopes> {
  const role = isValidRoleName(name) ? await findRole(db, name) : undefined;
  if (role === undefined) throw noSuchRole(name);
  return role;
}

/**
 * Runs a change to a role that must exist, and returns the role as it is after it. A role deleted
 * by someone else meanwhile (its scopes would then point at nothing) is the same not_found.
 */
async function changeExistingRole(
  db: Kysely<Database>,
  name: string,
  change: (trx: Kysely<Database>) => Promise<unknown>,
): Promise<RoleWithScopes> {
  try {
    return await inTransaction(db, async (trx) => {
      await requireRole(trx, name);
      await change(trx);
      return requireRole(trx, name);
    });
  } catch (error) {
    if (isForeignKeyViolation(error)) throw noSuchRole(name);
    throw error;
  }
}

const noSuchRole = (name: string) => new RoleError('not_found', `no such role: ${name}`);

function checkedScopes(scopes: readonly string[]): string[] {
  const problem = checkScopeList(scopes);
  if (problem !== undefined) throw new RoleError('invalid_role', problem);
  return [...new Set(scopes)];
}

function checkedDescription(description: string): string {
  const problem = checkRoleDescription(description);
  if (problem !== undefined) throw new RoleError('invalid_role', problem);
  return description;
}

// What is wrong with a new role's name or description, or undefined: rules that need no database, so
// the CLI checks its command line with them before it opens one.

export function checkRoleName(name: string): string | undefined {
  return isValidRoleName(name) ? undefined : 'a role name has 1 to 64 letters, digits or . _ : -';
}

export function checkRoleDescription(description: string): string | undefined {
  return description.length > MAX_DESCRIPTION_LENGTH || hasControlCharacters(description)
    ? `a role description has at most ${MAX_DESCRIPTION_LENGTH} characters and no control characters`
    : undefined;
}
