import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** 256 bits from the CSPRNG, base64url: 43 characters. */
export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Client secrets are 256-bit random values, not human passwords, so a fast hash is enough: a
 * database dump still reveals nothing usable, and there is nothing to brute-force. (Argon2 here
 * would only make every client authentication slow.) The prefix leaves room for another scheme.
 */
export function hashClientSecret(secret: string): string {
  return `sha256:${createHash('sha256').update(secret, 'utf8').digest('hex')}`;
}

export function verifyClientSecret(secret: string, stored: string): boolean {
  const expected = Buffer.from(stored, 'utf8');
  const actual = Buffer.from(hashClientSecret(secret), 'utf8');
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** Secrets supplied by an operator (--secret-stdin) must carry comparable entropy. */
export const MIN_SUPPLIED_SECRET_LENGTH = 32;

/** RFC 3986 §2.3 unreserved characters: the same with or without form encoding (RFC 6749 App. B). */
const UNRESERVED = /^[A-Za-z0-9._~-]+$/;

/** Whether every client sends this secret alike, form-encoded in a Basic header (as RFC 6749 §2.3.1 asks) or not. */
export function isSendableSecret(secret: string): boolean {
  return UNRESERVED.test(secret);
}
