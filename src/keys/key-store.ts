import { createHash, createPrivateKey, createPublicKey, generateKeyPair, type JsonWebKey, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { performance } from 'node:perf_hooks';
import { type Kysely, sql } from 'kysely';
import type { Database } from '../db/schema.js';
import { findActiveSigningKey, insertFirstSigningKey, listSigningKeys, type NewSigningKey } from '../db/signing-keys.js';
import type { KeyRing } from './key-encryption.js';

const generateRsaKeyPair = promisify(generateKeyPair);
export const SIGNING_ALGORITHM = 'RS256';
const RSA_MODULUS_BITS = 2048;
/** Any constant shared by all replicas; serialises "create the first key" across them. */
const FIRST_KEY_LOCK = 0x7e55e4a1;

/** What one process needs to sign and verify; rebuilt whenever the key table changes. */
export interface KeySet {
  /**
   * `ageSeconds`: how long it had signed when the set was loaded, as the database's clock measures
   * it, and `loadedAt` (performance.now()) when that was: the metrics report its age from the two.
   */
  readonly signing: { readonly kid: string; readonly privateKey: KeyObject; readonly ageSeconds: number; readonly loadedAt: number };
  /** Every published key by kid (next, active, retired): what verification may use. */
  readonly publicKeys: ReadonlyMap<string, KeyObject>;
  /** The JWKS document and its ETag, computed once per key-set change, not per request. */
  readonly jwks: { readonly body: string; readonly etag: string };
}

export interface KeyStore {
  current(): KeySet;
  /** Re-reads the key table (another replica or the CLI may have changed it). */
  reload(): Promise<void>;
  /** False while the latest reload failed: this replica may be signing with an outdated key. */
  isFresh(): boolean;
}

/**
 * Makes sure a signing key exists. The first start on an empty database creates one; replicas that
 * start together take an advisory lock, so exactly one generates it and the rest find it.
 */
export async function ensureSigningKey(db: Kysely<Database>, ring: KeyRing): Promise<void> {
  if (await findActiveSigningKey(db)) return;
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${FIRST_KEY_LOCK})`.execute(trx);
    if (await findActiveSigningKey(trx)) return;
    // Its times are the database's, as every time of the lifecycle (src/keys/lifecycle.ts).
    await insertFirstSigningKey(trx, await generateSigningKey(ring));
  });
}

/** A new RSA key: its public JWK (kid = RFC 7638 thumbprint) and its private part sealed by the ring. */
export async function generateSigningKey(ring: KeyRing): Promise<NewSigningKey & { public_jwk: JWK }> {
  const { publicKey, privateKey } = await generateRsaKeyPair('rsa', { modulusLength: RSA_MODULUS_BITS });
  const { kty, n, e } = publicKey.export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint({ kty: kty!, n: n!, e: e! });
  const sealed = ring.encrypt(privateKey.export({ format: 'der', type: 'pkcs8' }), kid);
  return {
    kid,
    algorithm: SIGNING_ALGORITHM,
    public_jwk: { kty, n, e, kid, use: 'sig', alg: SIGNING_ALGORITHM },
    private_key_ciphertext: sealed.ciphertext,
    kek_id: sealed.kekId,
  };
}

export async function loadKeySet(db: Kysely<Database>, ring: KeyRing): Promise<KeySet> {
  const rows = await listSigningKeys(db);
  const active = rows.find((row) => row.state === 'active');
  if (active === undefined) throw new Error('there is no active signing key');
  // A next key must open too, or its promotion would break signing later: fail now, clearly.
  for (const row of rows.filter((r) => r.state === 'next')) {
    ring.decrypt({ ciphertext: row.private_key_ciphertext, kekId: row.kek_id }, row.kid);
  }
  const privateKey = createPrivateKey({
    key: ring.decrypt({ ciphertext: active.private_key_ciphertext, kekId: active.kek_id }, active.kid),
    format: 'der',
    type: 'pkcs8',
  });
  // Active first: verifiers that take the first key still pick the one in use.
  const published = [active, ...rows.filter((row) => row !== active)];
  const publicKeys = new Map(
    published.map((row) => [row.kid, createPublicKey({ key: row.public_jwk as JsonWebKey, format: 'jwk' })]),
  );
  const body = JSON.stringify({ keys: published.map((row) => publicMembers(row.public_jwk)) });
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`;
  return { signing: { kid: active.kid, privateKey, ageSeconds: active.age_seconds, loadedAt: performance.now() }, publicKeys, jwks: { body, etag } };
}

/**
 * How long the signing key has signed: its age on the database's clock when the set was loaded,
 * plus the time elapsed since on this process's monotonic clock. One clock each, never two hosts'
 * wall clocks subtracted (a replica's clock minutes off would report a wrong age, or a negative one).
 */
export function signingKeyAgeSeconds(keySet: KeySet, monotonicNow: number = performance.now()): number {
  return Math.max(0, keySet.signing.ageSeconds + (monotonicNow - keySet.signing.loadedAt) / 1000);
}

/** Only what RFC 7517 lets a verifier see: never d, p, q, dp, dq or qi, whatever the row holds. */
function publicMembers(jwk: Record<string, unknown>): Record<string, unknown> {
  const { kty, n, e, kid, use, alg } = jwk;
  return { kty, use, alg, kid, n, e };
}

export async function createKeyStore(db: Kysely<Database>, ring: KeyRing): Promise<KeyStore> {
  let keySet = await loadKeySet(db, ring);
  let fresh = true;
  return {
    current: () => keySet,
    isFresh: () => fresh,
    async reload() {
      try {
        keySet = await loadKeySet(db, ring);
        fresh = true;
      } catch (error) {
        fresh = false;
        throw error;
      }
    },
  };
}
