import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';

/** 256 bits from the CSPRNG, base64url: 43 characters, opaque to clients. */
export function generateRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

/** What the database keeps instead of the token. A 256-bit random value needs no slow hash. */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** Anything that cannot be a token Tessera issued is refused without a database look-up. */
export function isWellFormedRefreshToken(token: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(token);
}

/*
 * Replays without usable tokens at rest.
 *
 * When token P is rotated to successor S, the family row stores S encrypted (AES-256-GCM) under a
 * key derived (HKDF-SHA256) from P itself together with a server secret derived from
 * KEY_ENCRYPTION_KEYS. A client that retries with P before S has been used (its answer was lost,
 * or two of its requests raced) can be handed S again, byte for byte: it holds P, and the server
 * holds the secret. Neither half is enough:
 * - a database dump holds only SHA-256(P) and the ciphertext, and P cannot be recovered from its hash;
 * - a dump together with a leaked, already-used P still lacks the server secret, which is never
 *   in the database.
 * Only the latest successor is kept, until it is used (the next rotation replaces it) or the family
 * ends (revocation erases it, the purge deletes the row): a retry may come after any outage.
 * Every key of the ring is tried when opening, so rotating KEY_ENCRYPTION_KEYS breaks no replay.
 * Strings go in as UTF-8, Node's default (src/refresh/tokens.test.ts holds a successor sealed so).
 */
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const SUCCESSOR_SEAL_PURPOSE = 'refresh successor v1';
/**
 * How a successor sealed since issue 17 begins. It is bound to its parent's hash (the row the
 * parent is stored as) rather than to the family's id, so that it can be sealed before the family
 * is read: the read and the rotation are one statement (src/db/refresh-families.ts,
 * advanceCurrentToken). Successors sealed before (no prefix, bound to the family) still open.
 */
const V2 = 'v2.';

/**
 * HKDF-SHA256 (RFC 5869) of the server key and the parent, salted with the binding: 32 bytes, one
 * block of Expand. Written out as its two HMACs (Extract: PRK = HMAC(salt, IKM); Expand: T(1) =
 * HMAC(PRK, info || 0x01)), which give hkdfSync's bytes (the sealed samples of tokens.test.ts were
 * made with it) at half its CPU: hkdfSync makes key objects and a job for 32 bytes (BENCHMARKS.md).
 */
function successorKey(parent: string, serverKey: Buffer, binding: string, info: string): Buffer {
  const prk = createHmac('sha256', binding).update(serverKey).update(parent).digest();
  return createHmac('sha256', prk).update(info).update(EXPAND_FIRST_BLOCK).digest();
}
const EXPAND_FIRST_BLOCK = Buffer.of(1);

/** Sealed for `parent`, bound to its hash (`binding`: hashRefreshToken(parent), when the caller has it already). */
export function sealSuccessor(parent: string, successor: string, serverKeys: readonly Buffer[], binding = hashRefreshToken(parent)): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', successorKey(parent, serverKeys[0]!, binding, 'tessera refresh successor v2'), iv);
  cipher.setAAD(Buffer.from(binding));
  const body = Buffer.concat([cipher.update(successor), cipher.final()]);
  return V2 + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
}

/** Undefined if `parent` is not the token the successor was sealed for (or no server key matches). */
export function openSuccessor(parent: string, sealed: string, familyId: string, serverKeys: readonly Buffer[]): string | undefined {
  const v2 = sealed.startsWith(V2);
  const binding = v2 ? hashRefreshToken(parent) : familyId;
  const info = v2 ? 'tessera refresh successor v2' : 'tessera refresh successor v1';
  const raw = Buffer.from(v2 ? sealed.slice(V2.length) : sealed, 'base64url');
  for (const serverKey of serverKeys) {
    try {
      const decipher = createDecipheriv('aes-256-gcm', successorKey(parent, serverKey, binding, info), raw.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(binding));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      // not this key
    }
  }
  return undefined;
}
