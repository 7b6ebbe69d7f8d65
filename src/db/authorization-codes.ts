import type { Kysely } from 'kysely';
import type { AuthorizationCode, Database } from './schema.js';

export async function insertAuthorizationCode(db: Kysely<Database>, code: Omit<AuthorizationCode, 'used_at' | 'family_id'>): Promise<void> {
  await db.insertInto('authorization_codes').values(code).execute();
}

export async function findAuthorizationCode(db: Kysely<Database>, codeHash: string): Promise<AuthorizationCode | undefined> {
  return db.selectFrom('authorization_codes').selectAll().where('code_hash', '=', codeHash).executeTakeFirst();
}

/**
 * Marks the code used, recording the family its one exchange starts; false if it was already used
 * (a replay, or a twin request that won the race). One compare-and-set statement.
 */
export async function consumeAuthorizationCode(db: Kysely<Database>, codeHash: string, familyId: string, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('authorization_codes')
    .set({ used_at: now, family_id: familyId })
    .where('code_hash', '=', codeHash)
    .where('used_at', 'is', null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}
