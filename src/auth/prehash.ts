import { checkNewPassword, type PasswordHasher } from './passwords.js';

/**
 * A hasher that has already hashed `password`: a change that hashes inside its transaction (the
 * audit row shares it, src/audit/writer.ts) then holds no database connection while Argon2 runs,
 * or waits for a slot behind ARGON2_MAX_CONCURRENCY. Only a password the policy takes is hashed
 * ahead: one it refuses costs no hash, as before. `username` is the normalised one, if any.
 */
export async function hashAhead(passwords: PasswordHasher, password: string, username: string | undefined): Promise<PasswordHasher> {
  if (checkNewPassword(password, username) !== undefined) return passwords;
  const ready = await passwords.hash(password);
  return { ...passwords, hash: (text) => (text === password ? Promise.resolve(ready) : passwords.hash(text)) };
}
