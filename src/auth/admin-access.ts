import type { Kysely } from 'kysely';
import { clientMayIssue } from '../db/clients.js';
import type { Database } from '../db/schema.js';
import { inTransaction } from '../db/transaction.js';
import { userHoldsScope } from '../db/users.js';

/** The scope the admin API requires (src/http/admin/auth.ts). */
export const ADMIN_SCOPE = 'admin';

/** The acting admin of an admin API request: the user, and the client their access token came from. */
export interface ActingAdmin {
  readonly userId: string;
  readonly clientId: string;
}

/** A change would leave the acting admin locked out of the admin API (a 409 there). */
export class AdminAccessError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdminAccessError';
  }
}

/**
 * Runs an admin's change in one transaction and checks, before it commits, that the admin still
 * has what the admin API needs: their account, enabled, holding the admin scope (directly or
 * through a role), and a client that may still issue it to them. A change that takes any of it
 * away, by whatever path (the user's roles or scopes, a role's scopes, a role's deletion, disabling,
 * deletion, the client's scopes or grants, and any path added later), is rolled back. Only the CLI,
 * which has no acting admin, can then make it: it stays the way back in.
 */
export async function keepAdminAccess<T>(db: Kysely<Database>, admin: ActingAdmin, change: (trx: Kysely<Database>) => Promise<T>): Promise<T> {
  // The grants that give a user an access token, admin tokens included.
  const userGrants = ['password', 'refresh_token'] as const;
  return inTransaction(db, async (trx) => {
    // The client part is checked only if it held before: an admin whose client already cannot
    // issue the scope again (another admin changed it) may still make unrelated changes.
    const clientBefore = await clientMayIssue(trx, admin.clientId, ADMIN_SCOPE, userGrants);
    const result = await change(trx);
    if (!(await userHoldsScope(trx, admin.userId, ADMIN_SCOPE))) {
      throw new AdminAccessError('an admin cannot take the admin scope from their own account');
    }
    if (clientBefore && !(await clientMayIssue(trx, admin.clientId, ADMIN_SCOPE, userGrants))) {
      throw new AdminAccessError('an admin cannot take the admin scope or its grants from the client of their own token');
    }
    return result;
  });
}
