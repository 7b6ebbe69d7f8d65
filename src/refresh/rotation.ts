import { randomUUID } from 'node:crypto';
import type { AuditContext } from '../audit/entry.js';
import { auditedChange } from '../audit/writer.js';
import { isDatabaseAnswer } from '../db/errors.js';
import { advanceCurrentToken, advanceFamily, findTokenFamily, insertFamily, revokeFamily, type TokenFamily } from '../db/refresh-families.js';
import type { Client, RefreshFamily } from '../db/schema.js';
import type { Deps } from '../deps.js';
import { OAuthError } from '../oauth/errors.js';
import { waitUnless } from '../wait.js';
import { generateRefreshToken, hashRefreshToken, openSuccessor, sealSuccessor } from './tokens.js';

export interface NewSession {
  readonly userId: string;
  /** The user's password_changed_at as read when the password was verified. */
  readonly passwordChangedAt: Date;
  readonly clientId: string;
  readonly scope: readonly string[];
  readonly authTime: Date;
  /** The client may use the refresh grant: the session gets its first refresh token. */
  readonly refreshable: boolean;
  /** Chosen beforehand (an authorization code records it before the family exists); absent: a new one. */
  readonly familyId?: string;
  /** The browser session (hosted sign-in) this login came from, which its logout ends too. */
  readonly browserSessionId?: string;
}

/**
 * A login starts a session: a family whose id becomes the access token's `sid`, with its first
 * refresh token when the client may refresh. A client without the refresh grant gets a session all
 * the same, one that lives as long as the access token (ACCESS_TOKEN_TTL) and has no refresh
 * token: it is what a logout, a password change, disabling or deleting the user ends, so that the
 * access token stops working at Tessera's own endpoints at once (OWASP ASVS 5.0 V7.4.3) without
 * comparing its `iat` with any host's clock. Undefined if the user's password changed, or the user
 * was disabled, since the password was verified.
 */
export async function startSession(
  deps: Pick<Deps, 'db' | 'clock' | 'config'>,
  start: NewSession,
): Promise<{ familyId: string; token: string | undefined } | undefined> {
  const token = start.refreshable ? generateRefreshToken() : undefined;
  const familyId = start.familyId ?? randomUUID();
  const now = new Date(deps.clock.now());
  const lifetime = start.refreshable ? deps.config.refreshTokenAbsoluteTtl : deps.config.accessTokenTtl;
  const started = await insertFamily(
    deps.db,
    {
      id: familyId,
      user_id: start.userId,
      client_id: start.clientId,
      scope: [...start.scope],
      auth_time: start.authTime,
      created_at: now,
      expires_at: new Date(now.getTime() + lifetime * 1000),
      last_used_at: now,
      generation: 1,
      ...(start.browserSessionId === undefined ? {} : { browser_session_id: start.browserSessionId }),
    },
    token === undefined ? undefined : hashRefreshToken(token),
    start.passwordChangedAt,
  );
  return started ? { familyId, token } : undefined;
}

export interface Rotation {
  /** The successor: new, or the same one again for a retry of its parent. */
  readonly token: string;
  readonly family: RefreshFamily;
  readonly scope: string[];
}

type Outcome =
  | { readonly kind: 'rotated'; readonly token: string; readonly family: TokenFamily; readonly scope: string[] }
  | { readonly kind: 'replayed'; readonly late: boolean; readonly token: string; readonly family: TokenFamily; readonly scope: string[] }
  | { readonly kind: 'reuse'; readonly family: TokenFamily }
  | { readonly kind: 'refused'; readonly reason: string; readonly family?: TokenFamily };

// Functions, not constants holding arrow functions, so that a mutation test can switch each of
// them on per test (scripts/mutate.mjs: module-level code runs once, before any test).
function invalidGrant(): OAuthError {
  return new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked');
}
/** A family some other write keeps holding without moving it on: say "retry", never "invalid". */
const MAX_ROTATION_ATTEMPTS = 3;
function busy(): OAuthError {
  return new OAuthError('temporarily_unavailable', 'the service is busy; retry shortly', { headers: { 'Retry-After': '1' } });
}
/** How long the family of a rotation of unknown outcome is looked for: past the pool's query_timeout (src/db/connect.ts). */
const OUTCOME_LOOKUP_MS = 3_000;
/** A successor this replica cannot open: its KEY_ENCRYPTION_KEYS lack the key another replica sealed it with. */
function keyMissing(): OAuthError {
  return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable; retry later', { headers: { 'Retry-After': '5' } });
}

/**
 * One refresh in two round trips: read the token's family (with its user, one query), then move the
 * family on with a compare-and-set (advanceFamily: one statement that never waits on a lock). No
 * lock is held between the two. If the database fails before the statement commits, nothing is
 * consumed and the presented token still works; if it commits but its answer is lost (or it lands
 * late, after the client was told 503), the retry below gets its successor. `decideScope` runs
 * before the write, so an invalid_scope leaves the token unused too. When it cannot fail (no scope
 * asked for, the usual refresh), one round trip: the read and the compare-and-set are one
 * statement (readAndAdvance below), with the same checks and the same outcomes.
 *
 * - The current token rotates: its successor is stored (hash, plus the sealed copy for replays).
 * - The immediate parent, again, by the same client, while the successor has not been used, gets
 *   that same successor back (no sibling is minted): a retry whose answer was lost, however long
 *   the outage lasted (DESIGN.md: an infrastructure failure is never invalid_grant), or two
 *   requests racing. A request that loses the compare-and-set to such a twin is answered this way
 *   too. Within REFRESH_REUSE_GRACE of the rotation that is an ordinary retry; after it, it is still
 *   served, but logged at warn with `late: true`, so that a late parent shows up where alerts look.
 *   A replica that cannot open that successor (its KEY_ENCRYPTION_KEYS lack the sealing key)
 *   answers 503 and revokes nothing.
 * - Anything older, or the parent once its successor has been used (the family has moved on), is
 *   reuse (RFC 9700 §4.14.2): the family is revoked and the event is logged.
 */
export async function rotateRefreshToken(
  deps: Deps,
  request: {
    readonly token: string;
    readonly client: Client;
    readonly ip: string;
    readonly requestId?: string | undefined;
    /** The scope of the new access token, from the family as read; may throw invalid_scope. */
    readonly decideScope: (family: TokenFamily) => string[];
    /**
     * decideScope cannot throw (no scope was asked for: a default is narrowed, never refused), so
     * it may run after the write: the first attempt reads and moves the family in one statement.
     */
    readonly scopeCannotFail?: boolean;
  },
): Promise<Rotation> {
  const now = deps.clock.now();
  const tokenHash = hashRefreshToken(request.token);
  const context = { client_id: request.client.id, ip: request.ip };
  // The client presents the token: it is the actor of every refresh event.
  const auditContext: AuditContext = { actor: { type: 'client', id: request.client.id }, requestId: request.requestId };
  /** The family as it stands, or why it cannot be refreshed by this client now. */
  const read = async (options: { afterWriters?: boolean } = {}): Promise<TokenFamily | Outcome> => {
    const family = await findTokenFamily(deps.db, tokenHash, options);
    if (family === undefined) return { kind: 'refused', reason: 'unknown_token' };
    const reason = refusalReason(family, request.client, now, deps.config.refreshTokenIdleTtl);
    return reason === undefined ? family : { kind: 'refused', reason, family };
  };

  /**
   * No answer from PostgreSQL to a rotation (a timeout, a lost connection): it may have committed,
   * or may still, with no token_refreshed line. Say so, so that a later replay of this token can be
   * matched with it. (An error PostgreSQL answered means it did not commit.)
   */
  const recordOutcomeUnknown = (family: TokenFamily | undefined): void => {
    const fields = family === undefined ? context : { ...context, user_id: family.user_id, family_id: family.id, generation_presented: family.token_generation };
    deps.audit.record('refresh_outcome_unknown', fields, auditContext, 'warn');
  };

  /** The compare-and-set from the presented (current) token to `successor`. */
  const advance = (family: TokenFamily, successor: string): Promise<boolean> =>
    advanceFamily(deps.db, {
      familyId: family.id,
      fromGeneration: family.generation,
      tokenHash: hashRefreshToken(successor),
      successorCiphertext: sealSuccessor(request.token, successor, deps.successorKeys, tokenHash),
      now: new Date(now),
    }).catch((error: unknown) => {
      if (!isDatabaseAnswer(error)) recordOutcomeUnknown(family);
      throw error;
    });

  /**
   * The first attempt when the scope cannot fail: the read and the compare-and-set in one
   * statement (advanceCurrentToken), which moves the family on only where the read below would
   * have found nothing to refuse. Not moved: what the family as read says, as after read(); a
   * current token that lost the compare-and-set to another writer is read again once that write
   * has ended, as after a lost advance().
   */
  const readAndAdvance = async (): Promise<TokenFamily | Outcome> => {
    const successor = generateRefreshToken();
    const { family, advanced } = await advanceCurrentToken(deps.db, {
      tokenHash,
      clientId: request.client.id,
      successorHash: hashRefreshToken(successor),
      successorCiphertext: sealSuccessor(request.token, successor, deps.successorKeys, tokenHash),
      now: new Date(now),
      idleSince: new Date(now - deps.config.refreshTokenIdleTtl * 1000),
    }).catch((error: unknown) => {
      // Which family this was is in the answer that did not come: the event names it once a read
      // finds it (after the 503: that read may wait on the connection the lost statement holds),
      // or, with the database gone (no answer within OUTCOME_LOOKUP_MS), names the client and source only.
      if (!isDatabaseAnswer(error)) {
        const lookup = findTokenFamily(deps.db, tokenHash).catch(() => undefined);
        void waitUnless(OUTCOME_LOOKUP_MS, lookup).then(recordOutcomeUnknown);
      }
      throw error;
    });
    if (family === undefined) return { kind: 'refused', reason: 'unknown_token' };
    if (advanced) return { kind: 'rotated', token: successor, family, scope: request.decideScope(family) };
    const reason = refusalReason(family, request.client, now, deps.config.refreshTokenIdleTtl);
    if (reason !== undefined) return { kind: 'refused', reason, family };
    return family.token_generation === family.generation ? read({ afterWriters: true }) : family;
  };

  const decide = async (): Promise<Outcome> => {
    let family = request.scopeCannotFail === true ? await readAndAdvance() : await read();
    // After readAndAdvance, its statement was the first attempt.
    for (let attempt = request.scopeCannotFail === true ? 2 : 1; ; attempt += 1) {
      if ('kind' in family) return family;
      if (family.token_generation !== family.generation) break;
      const scope = request.decideScope(family);
      const successor = generateRefreshToken();
      const advanced = await advance(family, successor);
      if (advanced) return { kind: 'rotated', token: successor, family, scope };
      if (attempt === MAX_ROTATION_ATTEMPTS) throw busy();
      // Another use of this token (a retry, on any replica) or a revocation holds or has just moved
      // the family: wait for it to end, then go on from what it left.
      family = await read({ afterWriters: true });
    }
    // The parent of the current token: its successor is still unused (a use would have moved the
    // family on). Whether the replay is late decides only how loudly it is logged, never whether it
    // is served, so that the two clocks compared here (the rotating replica's and this one's) can
    // shift a log level by their skew but never end a session.
    const isParent = family.token_generation === family.generation - 1;
    if (isParent && family.successor_ciphertext !== null) {
      const successor = openSuccessor(request.token, family.successor_ciphertext, family.id, deps.successorKeys);
      if (successor === undefined) {
        // The presented token found the family by its hash, so it is the parent the successor was
        // sealed for: only the server secret can be wrong. A replica whose KEY_ENCRYPTION_KEYS lack
        // the key another replica sealed with (a key rotation rolled out to some replicas only) is
        // an infrastructure fault, never reuse: 503, nothing revoked, and another replica (or this
        // one, once its keys are fixed) serves the retry (DESIGN.md).
        const fields = { ...context, user_id: family.user_id, family_id: family.id };
        deps.log.error(fields, 'a refresh successor is sealed with a key this replica lacks: give every replica the same KEY_ENCRYPTION_KEYS');
        throw keyMissing();
      }
      const late = family.rotated_at === null || now - family.rotated_at.getTime() > deps.config.refreshReuseGrace * 1000;
      return { kind: 'replayed', late, token: successor, family, scope: request.decideScope(family) };
    }
    const reused = family;
    // The revocation and its event in one transaction.
    await auditedChange(
      deps,
      auditContext,
      (trx) => revokeFamily(trx, reused.id, 'reuse', new Date(now)),
      () => ({
        event: 'refresh_token_reuse_detected',
        level: 'warn',
        fields: {
          ...context,
          user_id: reused.user_id,
          family_id: reused.id,
          generation_presented: reused.token_generation,
          generation_current: reused.generation,
        },
      }),
    );
    return { kind: 'reuse', family };
  };
  const outcome = await decide();

  switch (outcome.kind) {
    case 'rotated':
      deps.audit.record('token_refreshed', { ...context, user_id: outcome.family.user_id, family_id: outcome.family.id }, auditContext);
      return { token: outcome.token, family: outcome.family, scope: outcome.scope };
    case 'replayed':
      if (outcome.late) deps.metrics.refreshLateReplayed();
      else deps.metrics.refreshGraceReplayed();
      deps.audit.record(
        'refresh_token_replayed',
        {
          ...context,
          user_id: outcome.family.user_id,
          family_id: outcome.family.id,
          generation_presented: outcome.family.token_generation,
          ...(outcome.late ? { late: true } : {}),
        },
        auditContext,
        outcome.late ? 'warn' : 'info',
      );
      return { token: outcome.token, family: outcome.family, scope: outcome.scope };
    case 'reuse':
      deps.metrics.refreshReuseDetected(); // its audit event was written with the revocation
      throw invalidGrant();
    case 'refused':
      deps.audit.record('refresh_failed', { ...context, reason: outcome.reason, family_id: outcome.family?.id }, auditContext);
      throw invalidGrant();
  }
}

/** Why this family cannot be refreshed by this client now, if it cannot. */
function refusalReason(family: TokenFamily, client: Client, now: number, idleTtlSeconds: number): string | undefined {
  // Bound to its client (RFC 6749 §6). Another client learns nothing and changes nothing.
  if (family.client_id !== client.id) return 'other_client';
  if (family.revoked_at !== null) return 'revoked';
  if (family.user_disabled) return 'user_disabled';
  // A password change revokes every family of the user in its own transaction, and a login creates
  // its family only while the user row still holds the password_changed_at it verified against
  // (insertFamily, an equality under FOR SHARE), so `revoked_at` covers a password change, even one
  // racing a login. Comparing created_at with password_changed_at, as this once did, compared two
  // hosts' clocks: a CLI host 120 s fast ended every login of the next two minutes.
  // Expiry below compares this replica's clock with deadlines days away that another replica set:
  // a skew of seconds moves them by seconds, which no one can tell from the TTL itself.
  const idleDeadline = family.last_used_at.getTime() + idleTtlSeconds * 1000;
  if (now >= family.expires_at.getTime() || now >= idleDeadline) return 'expired';
  return undefined;
}
