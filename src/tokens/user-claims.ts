import { userClaims, wantsUserClaims } from '../auth/token-claims.js';
import type { Client } from '../db/schema.js';
import { findUserClaimSource } from '../db/users.js';
import type { Deps } from '../deps.js';

/**
 * The claims about the user that `client` asks for, read now: at login and at every refresh, so a
 * refreshed token carries the user's roles and attributes as they are, not as they were at login.
 * Undefined, and no query, for a client that asks for none (the common case: a refresh stays two
 * round trips).
 */
export async function readUserClaims(
  deps: Pick<Deps, 'db' | 'log'>,
  client: Pick<Client, 'id' | 'roles_claim' | 'token_claims'>,
  userId: string,
): Promise<Record<string, unknown> | undefined> {
  if (!wantsUserClaims(client)) return undefined;
  const source = await findUserClaimSource(deps.db, userId);
  if (source === undefined) return undefined;
  const { claims, omitted } = userClaims(client, source);
  // Names only: the values are the user's data.
  if (omitted.length > 0) {
    deps.log.warn({ user_id: userId, client_id: client.id, omitted }, 'claims left out of an access token: together they pass 4 KiB');
  }
  return claims;
}
