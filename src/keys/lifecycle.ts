import { type Kysely, sql } from 'kysely';
import type { Logger } from 'pino';
import { audit } from '../audit.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database, SigningKeyRow } from '../db/schema.js';
import {
  deleteRetiredKeys,
  findActiveSigningKey,
  findNextSigningKey,
  insertSigningKey,
  listSigningKeys,
  promoteSigningKey,
  updateSigningKeyCiphertext,
} from '../db/signing-keys.js';
import type { KeyRing } from './key-encryption.js';
import { generateSigningKey } from './key-store.js';

/** Serialises key changes across replicas and the CLI (any constant shared by all of them). */
const KEY_CHANGE_LOCK = 0x7e55e4a2;
/** Replicas' clocks may differ a little (as in src/tokens/access-token.ts). */
const CLOCK_SKEW_SECONDS = 5;

type LifecycleConfig = Pick<Config, 'jwksMaxAge' | 'keyReloadInterval' | 'accessTokenTtl' | 'keyRotationInterval'>;

/**
 * Verifiers refetch a JWKS when they meet an unknown kid, but not more often than this: jose's
 * createRemoteJWKSet waits 30 s between fetches (its cooldownDuration), whatever max-age says.
 */
const VERIFIER_REFETCH_COOLDOWN_SECONDS = 30;

/**
 * The key lifecycle (DESIGN.md, Signing keys): next -> active -> retired -> removed.
 *
 * A next key is published at once but signs only when every verifier can have it: every replica
 * re-reads the key table within KEY_RELOAD_INTERVAL; a verifier that honours Cache-Control holds a
 * JWKS at most JWKS_MAX_AGE; one that caches longer refetches on an unknown kid, at most once per
 * cooldown. So it is promoted after the longer of the two, plus the reload interval, never sooner
 * (Hydra signs with a new key at once and breaks cached verifiers: ory/hydra#2535).
 */
export function promotionDelaySeconds(config: LifecycleConfig): number {
  // Two reload intervals (one tick may be missed) and the clocks' skew as margin.
  return Math.max(config.jwksMaxAge, VERIFIER_REFETCH_COOLDOWN_SECONDS) + 2 * config.keyReloadInterval + CLOCK_SKEW_SECONDS;
}

/**
 * A retired key stays published until every token it signed has expired: replicas may sign with
 * it until they reload, and tokens live ACCESS_TOKEN_TTL, give or take the clocks' skew.
 */
export function retentionSeconds(config: LifecycleConfig): number {
  return config.keyReloadInterval + config.accessTokenTtl + CLOCK_SKEW_SECONDS;
}

export interface KeyStatus {
  readonly kid: string;
  readonly state: SigningKeyRow['state'];
  readonly created_at: Date;
  readonly activated_at: Date | null;
  readonly retired_at: Date | null;
  /** For a next key: when it will sign. For a retired key: when it leaves the JWKS. */
  readonly next_change_at: Date | null;
}

export async function listKeyStatus(db: Kysely<Database>, config: LifecycleConfig): Promise<KeyStatus[]> {
  const rank = { active: 0, next: 1, retired: 2 } as const;
  const rows = (await listSigningKeys(db)).sort((a, b) => rank[a.state] - rank[b.state]);
  return rows.map((row) => ({
    kid: row.kid,
    state: row.state,
    created_at: row.created_at,
    activated_at: row.activated_at,
    retired_at: row.retired_at,
    next_change_at:
      row.state === 'next'
        ? new Date(row.created_at.getTime() + promotionDelaySeconds(config) * 1000)
        : row.state === 'retired' && row.retired_at
          ? new Date(row.retired_at.getTime() + retentionSeconds(config) * 1000)
          : null,
  }));
}

export class KeyLifecycleError extends Error {}

/** Whether this ring opens a key: a ring that cannot is not the deployment's. */
function opens(ring: KeyRing, key: SigningKeyRow): boolean {
  try {
    ring.decrypt({ ciphertext: key.private_key_ciphertext, kekId: key.kek_id }, key.kid);
    return true;
  } catch {
    return false;
  }
}

/**
 * Adds a next key (published now, signing after the promotion delay). One next key at a time.
 * Refused when this process's KEY_ENCRYPTION_KEYS cannot open the active key: a key sealed under
 * a ring the replicas do not have would break them when it became active.
 */
export async function rotateSigningKey(
  db: Kysely<Database>,
  ring: KeyRing,
  clock: Clock,
  log: Logger,
  actor: string,
  ip?: string,
): Promise<string> {
  const key = await generateSigningKey(ring);
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${KEY_CHANGE_LOCK})`.execute(trx);
    const active = await findActiveSigningKey(trx);
    if (active && !opens(ring, active)) {
      throw new KeyLifecycleError('these KEY_ENCRYPTION_KEYS cannot open the active signing key: run this with the service\'s keys');
    }
    const waiting = await findNextSigningKey(trx);
    if (waiting) throw new KeyLifecycleError(`key ${waiting.kid} is already waiting to become active`);
    await insertSigningKey(trx, { ...key, state: 'next', created_at: new Date(clock.now()), activated_at: null, retired_at: null });
  });
  audit(log, 'signing_key_created', { kid: key.kid, actor, ...(ip === undefined ? {} : { ip }) });
  return key.kid;
}

/**
 * One pass of key housekeeping, run by every replica every KEY_RELOAD_INTERVAL: promote a next
 * key whose delay is over, remove retired keys past their retention, and start an automatic
 * rotation when KEY_ROTATION_INTERVAL says so. The advisory lock makes exactly one replica do
 * each change; the others find nothing left to do. Returns whether anything changed.
 */
export async function maintainSigningKeys(deps: {
  readonly db: Kysely<Database>;
  readonly ring: KeyRing;
  readonly clock: Clock;
  readonly log: Logger;
  readonly config: LifecycleConfig;
}): Promise<boolean> {
  const { db, clock, config, log } = deps;
  const now = clock.now();
  const changed = await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${KEY_CHANGE_LOCK})`.execute(trx);
    let change = false;
    const next = await findNextSigningKey(trx);
    if (next && next.created_at.getTime() + promotionDelaySeconds(config) * 1000 <= now) {
      if (!opens(deps.ring, next)) {
        // Promoting it would leave every replica unable to sign: keep the current key and say so.
        log.error({ kid: next.kid }, 'a next signing key cannot be opened with KEY_ENCRYPTION_KEYS: not promoting it');
      } else {
        await promoteSigningKey(trx, next.kid, new Date(now));
        audit(log, 'signing_key_activated', { kid: next.kid });
        change = true;
      }
    }
    const removed = await deleteRetiredKeys(trx, new Date(now - retentionSeconds(config) * 1000));
    for (const kid of removed) audit(log, 'signing_key_removed', { kid });
    return change || removed.length > 0;
  });
  if (config.keyRotationInterval !== undefined && !(await findNextSigningKey(db))) {
    const active = await findActiveSigningKey(db);
    const since = active?.activated_at ?? active?.created_at;
    if (since && since.getTime() + config.keyRotationInterval * 1000 <= now) {
      await rotateSigningKey(db, deps.ring, clock, log, 'schedule').catch((error: unknown) => {
        if (!(error instanceof KeyLifecycleError)) throw error; // another replica was first
      });
      return true;
    }
  }
  return changed;
}

/** `tessera keys reencrypt`: every private key sealed again under the first key-encryption key. */
export async function reencryptSigningKeys(db: Kysely<Database>, ring: KeyRing): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${KEY_CHANGE_LOCK})`.execute(trx);
    const rows = await listSigningKeys(trx);
    for (const row of rows) {
      const plain = ring.decrypt({ ciphertext: row.private_key_ciphertext, kekId: row.kek_id }, row.kid);
      const sealed = ring.encrypt(plain, row.kid);
      await updateSigningKeyCiphertext(trx, row.kid, sealed.ciphertext, sealed.kekId);
    }
    return rows.length;
  });
}
