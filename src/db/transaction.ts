import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/**
 * Runs `work` in a transaction: a new one, or the caller's when `db` already is one. So a domain
 * change that needs its own transaction can also be one step of a larger one, which then commits
 * or rolls back as a whole (the admin API checks what a change leaves before it commits:
 * src/auth/admin-access.ts).
 */
export async function inTransaction<T>(db: Kysely<Database>, work: (trx: Kysely<Database>) => Promise<T>): Promise<T> {
  return db.isTransaction ? work(db) : db.transaction().execute(work);
}
