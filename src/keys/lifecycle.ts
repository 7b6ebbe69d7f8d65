import { type Kysely, sql } from 'kysely';
import type { Logger } from 'pino';
import { type AuditContext, type AuditNote, SYSTEM } from '../audit/entry.js';
import { auditedChange } from '../audit/writer.js';
import { type Clock, systemClock } from '../clock.js';
import type { Config } from '../config.js';
import { announceReplicaSettings, deleteReplicaSettingsOutOfForce, findReplicaSettingsInForce, type ReplicaSettings } from '../db/replica-settings.js';
import type { Database, SigningKeyRow } from '../db/schema.js';
import { inTransaction } from '../db/transaction.js';
import {
  decideMissingActivations,
  deleteRetiredKeys,
  findActiveSigningKey,
  findDueNextSigningKey,
  findNextSigningKey,
  insertNextSigningKey,
  isRotationDue,
  listSigningKeys,
  promoteSigningKey,
  updateSigningKeyCiphertext,
} from '../db/signing-keys.js';
import type { KeyRing } from './key-encryption.js';
import { generateSigningKey } from './key-store.js';

// Every time in the key lifecycle is the database's: keys are stamped with PostgreSQL's now() and
// every "is it time yet?" is a comparison with now() in SQL. This departs on purpose from the house
// rule that time comes from deps.clock: these decisions are shared by every replica and the CLI,
// which run on hosts whose clocks differ (a CLI host minutes off, replicas apart), and a decision
// two hosts make on two clocks is two decisions (ATTACKS.md I5). Durations still come from
// configuration, and the largest any serving replica announced is the one that counts.

/** Serialises key changes across replicas and the CLI (any constant shared by all of them). */
export const KEY_CHANGE_LOCK = 0x7e55e4a2;
/**
 * A margin on every delay: timers drift, and verifiers accept a token a few seconds past its `exp`
 * (their clock tolerance, 5 s in src/tokens/access-token.ts and @tessera-auth/verify).
 */
const MARGIN_SECONDS = 5;

/** What a replica's configuration says about the keys it serves (all in seconds). */
export type KeySettings = ReplicaSettings;
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
 * re-reads the key table within its KEY_RELOAD_INTERVAL; a verifier that honours Cache-Control
 * holds a JWKS at most the max-age the replica announced; one that caches longer refetches on an
 * unknown kid, at most once per cooldown. So it is promoted after the longest of these, plus two
 * reload intervals, never sooner (Hydra signs with a new key at once and breaks cached verifiers:
 * ory/hydra#2535). With several settings (replicas configured differently), the largest of each.
 */
export function promotionDelaySeconds(...settings: readonly KeySettings[]): number {
  const maxAge = Math.max(VERIFIER_REFETCH_COOLDOWN_SECONDS, ...settings.map((s) => s.jwksMaxAge));
  const reload = Math.max(0, ...settings.map((s) => s.keyReloadInterval));
  // Two reload intervals (one pass may be missed) and the margin.
  return maxAge + 2 * reload + MARGIN_SECONDS;
}

/**
 * A retired key stays published until every token it signed has expired: a replica may sign with
 * it until it reloads, and its tokens live its ACCESS_TOKEN_TTL, plus the verifiers' tolerance.
 */
export function retentionSeconds(...settings: readonly KeySettings[]): number {
  return Math.max(0, ...settings.map((s) => s.keyReloadInterval + s.accessTokenTtl)) + MARGIN_SECONDS;
}

/**
 * Who decides: a serving replica (its own settings count with every other replica's in force), or
 * the CLI, which serves no JWKS and signs nothing, so its own JWKS_MAX_AGE is not what verifiers
 * hold: it goes by what the replicas announced, and by its settings only when none has.
 */
export interface KeyDecider {
  readonly config: LifecycleConfig;
  readonly serving: boolean;
}

/** The settings every decision of the lifecycle takes the largest of (src/db/replica-settings.ts). */
async function settingsInForce(db: Kysely<Database>, decider: KeyDecider): Promise<KeySettings[]> {
  const announced = await findReplicaSettingsInForce(db, MARGIN_SECONDS);
  if (decider.serving) return [...announced, decider.config];
  return announced.length > 0 ? announced : [decider.config];
}

/** A serving replica says what it serves with (at start-up and every KEY_RELOAD_INTERVAL). */
export async function announceKeySettings(db: Kysely<Database>, config: LifecycleConfig): Promise<void> {
  await announceReplicaSettings(db, { jwksMaxAge: config.jwksMaxAge, keyReloadInterval: config.keyReloadInterval, accessTokenTtl: config.accessTokenTtl });
}

export interface KeyStatus {
  readonly kid: string;
  readonly state: SigningKeyRow['state'];
  readonly created_at: Date;
  readonly activated_at: Date | null;
  readonly retired_at: Date | null;
  /**
   * For a next key: when it will sign (stored when it was added, the same for every replica and
   * the CLI). For a retired key: when it leaves the JWKS.
   */
  readonly next_change_at: Date | null;
}

function keyStatus(row: SigningKeyRow, retention: number): KeyStatus {
  return {
    kid: row.kid,
    state: row.state,
    created_at: row.created_at,
    activated_at: row.activated_at,
    retired_at: row.retired_at,
    next_change_at:
      row.state === 'next'
        ? row.activates_at
        : row.state === 'retired' && row.retired_at
          ? new Date(row.retired_at.getTime() + retention * 1000)
          : null,
  };
}

export async function listKeyStatus(db: Kysely<Database>, decider: KeyDecider): Promise<KeyStatus[]> {
  const rank = { active: 0, next: 1, retired: 2 } as const;
  const [rows, settings] = await Promise.all([listSigningKeys(db), settingsInForce(db, decider)]);
  const retention = retentionSeconds(...settings);
  return rows.sort((a, b) => rank[a.state] - rank[b.state]).map((row) => keyStatus(row, retention));
}

export class KeyLifecycleError extends Error {}

/** Whether this ring opens a key: a ring that cannot is not the deployment's. */
function opens(ring: KeyRing, key: SigningKeyRow): boolean {
  try {
    ring.decrypt({ ciphertext: key.private_key_ciphertext, kekId: key.kek_id }, key.kid);
  } catch {
    return false;
  }
  return true;
}

export interface KeyDeps extends KeyDecider {
  readonly db: Kysely<Database>;
  readonly ring: KeyRing;
  readonly log: Logger;
  /** Stamps the audit rows (the service's clock; the system's when not given). */
  readonly clock?: Clock;
}

const auditSink = (deps: KeyDeps | Omit<KeyDeps, 'serving'>) => ({ db: deps.db, log: deps.log, clock: deps.clock ?? systemClock });

/**
 * Adds a next key, published now and signing from its activation time, decided here once, on the
 * database's clock, from the largest settings in force; every replica and the CLI then read it.
 * One next key at a time. Refused when this process's KEY_ENCRYPTION_KEYS cannot open the active
 * key: a key sealed under a ring the replicas do not have would break them when it became active.
 */
export async function rotateSigningKey(deps: KeyDeps, actor: string, context: AuditContext = SYSTEM): Promise<KeyStatus> {
  const key = await generateSigningKey(deps.ring);
  // No ip from the CLI or the schedule: an undefined member is left out of the log line.
  const noteOf = (activatesAt: Date | null): AuditNote => ({
    event: 'signing_key_created',
    fields: { kid: key.kid, activates_at: activatesAt, actor, ip: context.ip },
  });
  const { row, retention } = await auditedChange(auditSink(deps), context, async (trx) => {
    await sql`select pg_advisory_xact_lock(${KEY_CHANGE_LOCK})`.execute(trx);
    const active = await findActiveSigningKey(trx);
    if (active && !opens(deps.ring, active)) {
      throw new KeyLifecycleError('these KEY_ENCRYPTION_KEYS cannot open the active signing key: run this with the service\'s keys');
    }
    const waiting = await findNextSigningKey(trx);
    if (waiting) throw new KeyLifecycleError(`key ${waiting.kid} is already waiting to become active`);
    const settings = await settingsInForce(trx, deps);
    return { row: await insertNextSigningKey(trx, key, promotionDelaySeconds(...settings)), retention: retentionSeconds(...settings) };
  }, ({ row: inserted }) => noteOf(inserted.activates_at));
  return keyStatus(row, retention);
}

/**
 * One pass of key housekeeping, run by every replica every KEY_RELOAD_INTERVAL: announce this
 * replica's settings, promote a next key whose activation time has come, remove retired keys past
 * their retention, and start an automatic rotation when KEY_ROTATION_INTERVAL says so. The advisory
 * lock makes exactly one replica do each change; the others find nothing left to do. Returns
 * whether anything changed.
 */
export async function maintainSigningKeys(deps: Omit<KeyDeps, 'serving'>): Promise<boolean> {
  const { db, config, log } = deps;
  const decider: KeyDecider = { config, serving: true };
  await announceKeySettings(db, config);
  const notes: AuditNote[] = [];
  const changed = await auditedChange(auditSink(deps), SYSTEM, async (trx) => {
    await sql`select pg_advisory_xact_lock(${KEY_CHANGE_LOCK})`.execute(trx);
    const settings = await settingsInForce(trx, decider);
    for (const kid of await decideMissingActivations(trx, promotionDelaySeconds(...settings))) {
      log.info({ kid }, 'a next signing key of the previous release gets its activation time');
    }
    let change = false;
    const due = await findDueNextSigningKey(trx);
    if (due) {
      if (!opens(deps.ring, due)) {
        // Promoting it would leave every replica unable to sign: keep the current key and say so.
        log.error({ kid: due.kid }, 'a next signing key cannot be opened with KEY_ENCRYPTION_KEYS: not promoting it');
      } else {
        await promoteSigningKey(trx, due.kid);
        notes.push({ event: 'signing_key_activated', fields: { kid: due.kid } });
        change = true;
      }
    }
    const removed = await deleteRetiredKeys(trx, retentionSeconds(...settings));
    for (const kid of removed) notes.push({ event: 'signing_key_removed', fields: { kid } });
    await deleteReplicaSettingsOutOfForce(trx, MARGIN_SECONDS);
    return change || removed.length > 0;
  }, () => notes);
  if (config.keyRotationInterval !== undefined && (await isRotationDue(db, config.keyRotationInterval))) {
    await rotateSigningKey({ ...deps, serving: true }, 'schedule', { actor: { type: 'system', id: 'schedule' } }).catch((error: unknown) => {
      if (!(error instanceof KeyLifecycleError)) throw error; // another replica was first
    });
    return true;
  }
  return changed;
}

/** `tessera keys reencrypt`: every private key sealed again under the first key-encryption key. */
export async function reencryptSigningKeys(db: Kysely<Database>, ring: KeyRing): Promise<number> {
  return inTransaction(db, async (trx) => {
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
