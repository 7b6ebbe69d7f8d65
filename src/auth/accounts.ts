import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../db/errors.js';
import type { Database, User } from '../db/schema.js';
import { changePassword, grantUserScopes, insertUser } from '../db/users.js';
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

/** Sets a new password under the policy. (Ending the user's refresh families joins this with the refresh grant.) */
export async function setAccountPassword(
  db: Kysely<Database>,
  passwords: PasswordHasher,
  user: Pick<User, 'id' | 'username'>,
  password: string,
  now: Date,
): Promise<void> {
  const weakness = checkNewPassword(password, user.username);
  if (weakness !== undefined) throw new AccountError('weak_password', weakness);
  if (!(await changePassword(db, user.id, await passwords.hash(password), now))) {
    throw new AccountError('not_found', 'no such user');
  }
}
