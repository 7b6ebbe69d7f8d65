import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

/** 256 bits from the CSPRNG, base64url: 43 characters, opaque to clients. */
export function generateRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

/** What the database keeps instead of the token. A 256-bit random value needs no slow hash. */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/** Anything that cannot be a token Tessera issued is refused without a database look-up. */
export function isWellFormedRefreshToken(token: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(token);
}

/*
 * Grace replays without plaintext tokens at rest.
 *
 * When token P is rotated to successor S, the family row stores S encrypted (AES-256-GCM) under a
 * key derived from P itself (HKDF-SHA256, distinct from the lookup hash by its `info`). A client
 * that retries with P inside the grace window can therefore be handed S again, byte for byte,
 * because it holds the one secret that opens it. The database holds only SHA-256(P) and the
 * ciphertext, so a dump reveals no usable token: opening the ciphertext needs P, and P cannot be
 * recovered from its hash. Only the latest successor is kept; a newer rotation replaces it, and
 * revoking the family erases it.
 */
const IV_BYTES = 12;
const TAG_BYTES = 16;

function successorKey(parent: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(parent, 'utf8'), Buffer.alloc(0), 'tessera refresh successor v1', 32));
}

export function sealSuccessor(parent: string, successor: string, familyId: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', successorKey(parent), iv);
  cipher.setAAD(Buffer.from(familyId, 'utf8'));
  const body = Buffer.concat([cipher.update(successor, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
}

/** Undefined if `parent` is not the token the successor was sealed for. */
export function openSuccessor(parent: string, sealed: string, familyId: string): string | undefined {
  const raw = Buffer.from(sealed, 'base64url');
  try {
    const decipher = createDecipheriv('aes-256-gcm', successorKey(parent), raw.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(familyId, 'utf8'));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}
