import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../db/errors.js';
import type { Database, User } from '../db/schema.js';
import { revokeUserFamilies } from '../db/refresh-families.js';
import { changePassword, grantUserScopes, insertUser, setUserDisabled } from '../db/users.js';
import { checkNewPassword, type PasswordHasher } from './passwords.js';
import { normaliseUsername, USERNAME_RULES } from './usernames.js';

export type AccountErrorCode = 'invalid_username' | 'weak_password' | 'username_taken' | 'not_found';

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
}

/** Creates a user from raw input (CLI, bootstrap, later the admin API and registration): one set of rules. */
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
  const passwordHash = await passwords.hash(input.password);
  try {
    return await db.transaction().execute(async (trx) => {
      const user = await insertUser(trx, {
        id: randomUUID(),
        username,
        password_hash: passwordHash,
        created_at: now,
        updated_at: now,
        password_changed_at: now,
      });
      await grantUserScopes(trx, user.id, input.scopes ?? []);
      return user;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new AccountError('username_taken', 'a user with this username already exists');
    throw error;
  }
}

/**
 * Sets a new password under the policy and, in the same transaction, ends every refresh family of
 * the user: whoever held a session with the old password is logged out everywhere.
 * Returns how many families ended.
 */
export async function setAccountPassword(
  db: Kysely<Database>,
  passwords: PasswordHasher,
  user: Pick<User, 'id' | 'username'>,
  password: string,
  now: Date,
): Promise<number> {
  const weakness = checkNewPassword(password, user.username);
  if (weakness !== undefined) throw new AccountError('weak_password', weakness);
  const hash = await passwords.hash(password);
  return db.transaction().execute(async (trx) => {
    if (!(await changePassword(trx, user.id, hash, now))) throw new AccountError('not_found', 'no such user');
    return revokeUserFamilies(trx, user.id, 'password_changed', now);
  });
}

/** Disabling a user ends their sessions too; enabling does not bring them back. */
export async function setAccountDisabled(db: Kysely<Database>, userId: string, disabled: boolean, now: Date): Promise<number> {
  return db.transaction().execute(async (trx) => {
    if (!(await setUserDisabled(trx, userId, disabled, now))) throw new AccountError('not_found', 'no such user');
    return disabled ? revokeUserFamilies(trx, userId, 'user_disabled', now) : 0;
  });
}
