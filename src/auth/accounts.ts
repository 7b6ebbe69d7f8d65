import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { isForeignKeyViolation, isUniqueViolation } from '../db/errors.js';
import { findExistingRoles, replaceUserRoles } from '../db/roles.js';
import type { Database, User } from '../db/schema.js';
import { endUserBrowserSessions } from '../db/browser-sessions.js';
import { endUserResetTokens } from '../db/password-reset-tokens.js';
import { revokeUserFamilies } from '../db/refresh-families.js';
import { inTransaction } from '../db/transaction.js';
import { changePassword, grantUserScopes, insertUser, replaceUserScopes, setUserDisabled, touchUser, updateUserProfile } from '../db/users.js';
import { checkNewPassword, type PasswordHasher } from './passwords.js';
import { checkAttributes, normaliseEmail, normaliseName, ProfileError } from './profile.js';
import { checkScopeList } from './scopes.js';
import { normaliseUsername, USERNAME_RULES } from './usernames.js';

export type AccountErrorCode =
  | 'invalid_username'
  | 'weak_password'
  | 'invalid_scope'
  | 'unknown_role'
  | 'invalid_profile'
  | 'username_taken'
  | 'email_taken'
  | 'not_found';

/** A rule about accounts was broken; the message is safe to show to whoever asked. */
export class AccountError extends Error {
  constructor(
    readonly code: AccountErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AccountError';
  }
}

export interface NewAccount {
  readonly username: string;
  readonly password: string;
  readonly scopes?: readonly string[];
  readonly roles?: readonly string[];
  readonly email?: string | null | undefined;
  /** Only an operator (admin API, CLI) may say so; self-registration never does. */
  readonly emailVerified?: boolean | undefined;
  readonly name?: string | null | undefined;
  readonly attributes?: unknown;
}

/** The profile part of a new account or of a change: each member undefined when not given. */
export interface ProfileChanges {
  readonly email?: string | null | undefined;
  readonly emailVerified?: boolean | undefined;
  readonly name?: string | null | undefined;
  /** Replaces the attributes object as a whole. */
  readonly attributes?: unknown;
}

interface CheckedProfile {
  readonly email?: string | null;
  readonly email_verified?: boolean;
  readonly name?: string | null;
  readonly attributes?: string;
}

/**
 * The profile fields, checked and normalised (src/auth/profile.ts). A new or cleared email is
 * unverified unless the same change says otherwise: verification belonged to the old address.
 */
function checkedProfile(changes: ProfileChanges): CheckedProfile {
  try {
    const email = changes.email === undefined || changes.email === null ? changes.email : normaliseEmail(changes.email);
    const emailVerified = changes.emailVerified ?? (email === undefined ? undefined : false);
    if (emailVerified === true && email === null) throw new ProfileError(NO_EMAIL_TO_VERIFY);
    return {
      ...(email === undefined ? {} : { email }),
      ...(emailVerified === undefined ? {} : { email_verified: emailVerified }),
      ...(changes.name === undefined ? {} : { name: changes.name === null ? null : normaliseName(changes.name) }),
      ...(changes.attributes === undefined ? {} : { attributes: checkAttributes(changes.attributes).json }),
    };
  } catch (error) {
    if (error instanceof ProfileError) throw new AccountError('invalid_profile', error.message);
    throw error;
  }
}

const NO_EMAIL_TO_VERIFY = 'an email can be verified only when there is one';

/** What checkedProfile would refuse, or undefined: the CLI checks its command line with it before it opens a database. */
export function checkProfile(changes: ProfileChanges): string | undefined {
  try {
    checkedProfile(changes);
    return undefined;
  } catch (error) {
    if (error instanceof AccountError) return error.message;
    throw error;
  }
}

/**
 * Creates a user from raw input (CLI, bootstrap, admin API, registration): one set of rules. The
 * user, their scopes and their roles are written in one transaction, so an unknown role leaves no
 * half-created user behind.
 */
export async function createAccount(
  db: Kysely<Database>,
  passwords: PasswordHasher,
  input: NewAccount,
  now: Date,
): Promise<User> {
  const username = normaliseUsername(input.username);
  if (username === undefined) throw new AccountError('invalid_username', `the username must have ${USERNAME_RULES}`);
  const weakness = checkNewPassword(input.password, username);
  if (weakness !== undefined) throw new AccountError('weak_password', weakness);
  const scopes = checkedScopes(input.scopes);
  const roles = unique(input.roles ?? []);
  const profile = checkedProfile(input);
  if (profile.email_verified === true && profile.email === undefined) throw new AccountError('invalid_profile', NO_EMAIL_TO_VERIFY);
  const passwordHash = await passwords.hash(input.password);
  return withAccountErrors(() =>
    inTransaction(db, async (trx) => {
      await requireRoles(trx, roles);
      const user = await insertUser(trx, {
        id: randomUUID(),
        username,
        password_hash: passwordHash,
        created_at: now,
        updated_at: now,
        password_changed_at: now,
        ...profile,
      });
      await grantUserScopes(trx, user.id, scopes);
      await replaceUserRoles(trx, user.id, roles);
      return user;
    }),
  );
}

export interface AccountChanges {
  /** Replaces the user's direct scopes. */
  readonly scopes?: readonly string[] | undefined;
  /** Replaces the user's roles. */
  readonly roles?: readonly string[] | undefined;
  readonly disabled?: boolean | undefined;
}

/**
 * Changes what a user may do, and their profile, in one transaction. Disabling ends every refresh family of the user
 * too, and disabling or a changed or unverified email uses up every reset link; enabling does not
 * bring them back. Returns how many families ended.
 */
export async function updateAccount(
  db: Kysely<Database>,
  userId: string,
  changes: AccountChanges & ProfileChanges,
  now: Date,
): Promise<number> {
  const scopes = changes.scopes === undefined ? undefined : checkedScopes(changes.scopes);
  const roles = changes.roles === undefined ? undefined : unique(changes.roles);
  const profile = checkedProfile(changes);
  return withAccountErrors(() =>
    inTransaction(db, async (trx) => {
      const found =
        changes.disabled === undefined ? await touchUser(trx, userId, now) : await setUserDisabled(trx, userId, changes.disabled, now);
      if (!found) throw new AccountError('not_found', 'no such user');
      if (Object.keys(profile).length > 0) {
        const updated = await updateUserProfile(trx, userId, profile);
        // Verifying the address the user already has, and they have none: rolled back.
        if (updated?.email_verified === true && updated.email === null) throw new AccountError('invalid_profile', NO_EMAIL_TO_VERIFY);
      }
      if (scopes !== undefined) await replaceUserScopes(trx, userId, scopes);
      if (roles !== undefined) {
        await requireRoles(trx, roles);
        await replaceUserRoles(trx, userId, roles);
      }
      // A reset link went to the address as it was, for the account as it was.
      if (profile.email !== undefined || profile.email_verified === false || changes.disabled === true) await endUserResetTokens(trx, userId, now);
      if (changes.disabled !== true) return 0;
      // Browser sessions too: a disabled user's session is only refused while the flag stands,
      // and enabling the user again must not bring it back.
      await endUserBrowserSessions(trx, userId, now);
      return revokeUserFamilies(trx, userId, 'user_disabled', now);
    }),
  );
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

function checkedScopes(scopes: readonly string[] | undefined): string[] {
  const problem = checkScopeList(scopes ?? []);
  if (problem !== undefined) throw new AccountError('invalid_scope', problem);
  return unique(scopes ?? []);
}

async function requireRoles(db: Kysely<Database>, roles: readonly string[]): Promise<void> {
  const existing = new Set(await findExistingRoles(db, roles));
  const missing = roles.filter((role) => !existing.has(role));
  if (missing.length > 0) throw new AccountError('unknown_role', `no such role: ${missing.join(' ')}`);
}

/** A race with a concurrent change (the same username created, a role deleted) is the same error as losing it outright. */
async function withAccountErrors<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (isUniqueViolation(error, 'users_email_key')) throw new AccountError('email_taken', 'another user has this email');
    if (isUniqueViolation(error)) throw new AccountError('username_taken', 'a user with this username already exists');
    if (isForeignKeyViolation(error)) throw new AccountError('unknown_role', 'a role named there does not exist');
    throw error;
  }
}

/**
 * Sets a new password under the policy and, in the same transaction, ends every refresh family of
 * the user and every reset link still unused: whoever held a session with the old password is
 * logged out everywhere.
 * Returns how many families ended.
 */
export async function setAccountPassword(
  db: Kysely<Database>,
  passwords: PasswordHasher,
  user: Pick<User, 'id' | 'username'>,
  password: string,
  now: Date,
  /** Runs first in the same transaction (a password reset uses its token there); throwing leaves everything as it was. */
  before?: (trx: Kysely<Database>) => Promise<void>,
): Promise<number> {
  const weakness = checkNewPassword(password, user.username);
  if (weakness !== undefined) throw new AccountError('weak_password', weakness);
  const hash = await passwords.hash(password);
  return inTransaction(db, async (trx) => {
    await before?.(trx);
    if (!(await changePassword(trx, user.id, hash, now))) throw new AccountError('not_found', 'no such user');
    await endUserResetTokens(trx, user.id, now);
    return revokeUserFamilies(trx, user.id, 'password_changed', now);
  });
}

/** Disabling a user ends their sessions too; enabling does not bring them back. */
export async function setAccountDisabled(db: Kysely<Database>, userId: string, disabled: boolean, now: Date): Promise<number> {
  return updateAccount(db, userId, { disabled }, now);
}
