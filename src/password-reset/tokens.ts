import { createHash, randomBytes } from 'node:crypto';

/** How long a reset link works (DESIGN.md: 30 minutes). */
export const RESET_TOKEN_TTL_SECONDS = 30 * 60;

/** 256 bits from the CSPRNG, base64url without padding: 43 characters. */
export function generateResetToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Only this is stored. One SHA-256 is enough (no salt, no slow hash): the token is 256 random
 * bits, so no dictionary or brute force applies to it, and the lookup stays an index probe.
 */
export function hashResetToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export function isWellFormedResetToken(token: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(token);
}
