import { randomUUID } from 'node:crypto';
import { audit } from '../audit.js';
import { advanceFamily, findTokenFamily, insertFamily, revokeFamily, type TokenFamily } from '../db/refresh-families.js';
import type { Kysely } from 'kysely';
import type { Client, Database, RefreshFamily } from '../db/schema.js';
import type { Deps } from '../deps.js';
import { OAuthError } from '../oauth/errors.js';
import { generateRefreshToken, hashRefreshToken, openSuccessor, sealSuccessor } from './tokens.js';

export interface NewFamily {
  readonly userId: string;
  /** The user's password_changed_at as read when the password was verified. */
  readonly passwordChangedAt: Date;
  readonly clientId: string;
  readonly scope: readonly string[];
  readonly authTime: Date;
}

/**
 * A login starts a family: its first refresh token, and the family id that becomes the access
 * token's `sid`. Undefined if the user's password changed, or the user was disabled, since the
 * password was verified.
 */
export async function startFamily(
  deps: Pick<Deps, 'db' | 'clock' | 'config'>,
  start: NewFamily,
): Promise<{ token: string; familyId: string } | undefined> {
  const token = generateRefreshToken();
  const familyId = randomUUID();
  const now = new Date(deps.clock.now());
  const started = await insertFamily(
    deps.db,
    {
      id: familyId,
      user_id: start.userId,
      client_id: start.clientId,
      scope: [...start.scope],
      auth_time: start.authTime,
      created_at: now,
      expires_at: new Date(now.getTime() + deps.config.refreshTokenAbsoluteTtl * 1000),
      last_used_at: now,
      generation: 1,
    },
    hashRefreshToken(token),
    start.passwordChangedAt,
  );
  return started ? { token, familyId } : undefined;
}

export interface Rotation {
  /** The successor: new, or the same one again for a retry inside the grace window. */
  readonly token: string;
  readonly family: RefreshFamily;
  readonly scope: string[];
  readonly replayed: boolean;
}

type Outcome =
  | { readonly kind: 'rotated' | 'replayed'; readonly token: string; readonly family: TokenFamily; readonly scope: string[] }
  | { readonly kind: 'reuse'; readonly family: TokenFamily }
  | { readonly kind: 'refused'; readonly reason: string; readonly family?: TokenFamily };

const invalidGrant = () => new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked');

/**
 * One refresh, as one transaction on the family row (locked FOR UPDATE), committed before the
 * response is sent. If the database fails anywhere inside, nothing is consumed and the presented
 * token still works. `decideScope` runs inside, so an invalid_scope also leaves the token unused.
 *
 * - The current token rotates: its successor is stored (hash, plus the sealed copy for replays).
 * - The immediate parent, again, by the same client, within REFRESH_REUSE_GRACE of the rotation,
 *   gets that same successor back: a retry or a race, not an attack (no sibling is minted).
 * - Anything older, or the parent after the grace window, is reuse (RFC 9700 §4.14.2): the family
 *   is revoked in the same transaction and the event is logged.
 */
export async function rotateRefreshToken(
  deps: Deps,
  request: {
    readonly token: string;
    readonly client: Client;
    readonly ip: string;
    /** Runs inside the transaction and must query through `trx` (a second pool connection could deadlock the pool). */
    readonly decideScope: (family: RefreshFamily, trx: Kysely<Database>) => Promise<string[]>;
  },
): Promise<Rotation> {
  const now = deps.clock.now();
  const outcome = await deps.db.transaction().execute(async (trx): Promise<Outcome> => {
    const family = await findTokenFamily(trx, hashRefreshToken(request.token), { lock: true });
    if (family === undefined) return { kind: 'refused', reason: 'unknown_token' };
    // Bound to its client (RFC 6749 §6). Another client learns nothing and changes nothing.
    if (family.client_id !== request.client.id) return { kind: 'refused', reason: 'other_client', family };
    if (family.revoked_at !== null) return { kind: 'refused', reason: 'revoked', family };
    if (family.user_disabled) return { kind: 'refused', reason: 'user_disabled', family };
    // Families end when the password changes; this also covers one started in a race with the change.
    if (family.created_at < family.user_password_changed_at) return { kind: 'refused', reason: 'password_changed', family };
    const idleDeadline = family.last_used_at.getTime() + deps.config.refreshTokenIdleTtl * 1000;
    if (now >= family.expires_at.getTime() || now >= idleDeadline) return { kind: 'refused', reason: 'expired', family };

    if (family.token_generation === family.generation) {
      const scope = await request.decideScope(family, trx);
      const successor = generateRefreshToken();
      await advanceFamily(trx, {
        familyId: family.id,
        generation: family.generation + 1,
        tokenHash: hashRefreshToken(successor),
        successorCiphertext: sealSuccessor(request.token, successor, family.id, deps.successorKeys),
        now: new Date(now),
      });
      return { kind: 'rotated', token: successor, family, scope };
    }

    const isParent = family.token_generation === family.generation - 1;
    const inGrace = family.rotated_at !== null && now - family.rotated_at.getTime() <= deps.config.refreshReuseGrace * 1000;
    if (isParent && inGrace && family.successor_ciphertext !== null) {
      const successor = openSuccessor(request.token, family.successor_ciphertext, family.id, deps.successorKeys);
      if (successor !== undefined) return { kind: 'replayed', token: successor, family, scope: await request.decideScope(family, trx) };
    }
    await revokeFamily(trx, family.id, 'reuse', new Date(now));
    return { kind: 'reuse', family };
  });

  const context = { client_id: request.client.id, ip: request.ip };
  switch (outcome.kind) {
    case 'rotated':
    case 'replayed':
      if (outcome.kind === 'replayed') deps.metrics.refreshGraceReplayed();
      audit(deps.log, outcome.kind === 'rotated' ? 'token_refreshed' : 'refresh_token_replayed', {
        ...context,
        user_id: outcome.family.user_id,
        family_id: outcome.family.id,
      });
      return { token: outcome.token, family: outcome.family, scope: outcome.scope, replayed: outcome.kind === 'replayed' };
    case 'reuse':
      deps.metrics.refreshReuseDetected();
      audit(deps.log, 'refresh_token_reuse_detected', {
        ...context,
        user_id: outcome.family.user_id,
        family_id: outcome.family.id,
        generation_presented: outcome.family.token_generation,
        generation_current: outcome.family.generation,
      }, 'warn');
      throw invalidGrant();
    case 'refused':
      audit(deps.log, 'refresh_failed', { ...context, reason: outcome.reason, family_id: outcome.family?.id });
      throw invalidGrant();
  }
}
