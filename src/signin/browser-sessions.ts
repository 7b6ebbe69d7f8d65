import { randomUUID } from 'node:crypto';
import { auditedChange } from '../audit/writer.js';
import {
  endBrowserSession as endSessionRows,
  findLiveBrowserSession,
  handOverBrowserSession,
  insertBrowserSession,
  type LiveBrowserSession,
} from '../db/browser-sessions.js';
import type { User } from '../db/schema.js';
import type { Deps } from '../deps.js';
import { generateOpaqueSecret, hashOpaqueSecret, isWellFormedOpaqueSecret } from './secrets.js';

/**
 * How long a browser session lets /authorize skip the sign-in page, from sign-in (no sliding):
 * a working day, as an SSO session's usual maximum (Keycloak's default is 10 hours). The refresh
 * families its codes start live by their own TTLs, and end with it at logout.
 */
export const BROWSER_SESSION_SECONDS = 10 * 60 * 60;

export interface StartedBrowserSession {
  /** The public id: the ID token's `sid`. */
  readonly id: string;
  /** The cookie value; only its hash is stored. */
  readonly cookie: string;
  readonly authTime: Date;
}

/**
 * A successful sign-in starts a new session with a new cookie value (so a value fixed in the
 * browser before sign-in is never the one that is signed in: session fixation), and ends the
 * session the browser held before, if any: another user's with the families its codes started;
 * the same user's (signing in again for prompt=login or max_age) handing those families over to
 * the new session, since asking for the password again is no logout of the other clients.
 * Undefined if the user's password changed, or the user was disabled, since the password was
 * verified.
 */
export async function startBrowserSession(
  deps: Pick<Deps, 'db' | 'clock' | 'log'>,
  user: Pick<User, 'id' | 'password_changed_at'>,
  context: { readonly ip: string; readonly clientId: string; readonly previousCookie: string | undefined },
): Promise<StartedBrowserSession | undefined> {
  const now = new Date(deps.clock.now());
  const previous = await findBrowserSession(deps, context.previousCookie);
  if (previous !== undefined && previous.user_id !== user.id) await endBrowserSession(deps, previous.id, { reason: 'replaced', ip: context.ip });
  const id = randomUUID();
  const cookie = generateOpaqueSecret();
  const row = {
    id,
    token_hash: hashOpaqueSecret(cookie),
    user_id: user.id,
    password_changed_at: user.password_changed_at,
    auth_time: now,
    created_at: now,
    expires_at: new Date(now.getTime() + BROWSER_SESSION_SECONDS * 1000),
  };
  // The session and its audit row in one transaction (none if the password changed meanwhile).
  const started = await auditedChange(
    deps,
    { actor: { type: 'user', id: user.id }, ip: context.ip },
    (trx) => insertBrowserSession(trx, row),
    (inserted) =>
      inserted ? { event: 'browser_session_started', fields: { user_id: user.id, client_id: context.clientId, ip: context.ip, session_id: id } } : undefined,
  );
  if (!started) return undefined;
  if (previous !== undefined && previous.user_id === user.id) {
    await auditedChange(
      deps,
      { actor: { type: 'user', id: user.id }, ip: context.ip },
      (trx) => handOverBrowserSession(trx, previous.id, id, now),
      (families) => ({ event: 'browser_session_ended', fields: { session_id: previous.id, reason: 'replaced', ip: context.ip, successor_id: id, handed_over_family_ids: families, family_ids: [] } }),
    );
  }
  return { id, cookie, authTime: now };
}

/** The live session this cookie value names, if any. */
export async function findBrowserSession(deps: Pick<Deps, 'db' | 'clock'>, cookie: string | undefined): Promise<LiveBrowserSession | undefined> {
  if (cookie === undefined || !isWellFormedOpaqueSecret(cookie)) return undefined;
  return findLiveBrowserSession(deps.db, hashOpaqueSecret(cookie), new Date(deps.clock.now()));
}

/** Ends the session and every refresh family its codes started (RP-initiated logout, a new sign-in). */
export async function endBrowserSession(
  deps: Pick<Deps, 'db' | 'clock' | 'log'>,
  id: string,
  context: { readonly reason: 'logout' | 'replaced'; readonly ip: string; readonly clientId?: string | undefined },
): Promise<void> {
  // The browser's user ends it (a logout, a new sign-in): ended rows and their audit row together.
  await auditedChange(
    deps,
    { actor: { type: 'user' }, ip: context.ip },
    (trx) => endSessionRows(trx, id, new Date(deps.clock.now())),
    (families) => ({
      event: 'browser_session_ended',
      fields: {
        session_id: id,
        reason: context.reason,
        ip: context.ip,
        ...(context.clientId === undefined ? {} : { client_id: context.clientId }),
        family_ids: families,
      },
    }),
  );
}
