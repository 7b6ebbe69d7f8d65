import { OAuthError } from '../oauth/errors.js';
import type { RedisTopology } from './redis-target.js';

/**
 * The brute-force layers (DESIGN.md, README "Brute-force defence"). Request layers count every
 * request of a key and announce themselves in RateLimit headers; failure layers count only what
 * failed for the right reason (a verified wrong password, a failed client authentication) and
 * stay silent, since how often an account or a source has failed is nobody else's business.
 */
export type LimitLayer =
  | 'login_ip'
  | 'login_ip_account'
  | 'login_account'
  | 'client_auth'
  | 'client'
  | 'password_change'
  | 'register'
  | 'admin'
  | 'password_reset'
  | 'password_reset_account';
export type LimitBackend = 'redis' | 'memory' | 'memory_fallback';
/** The Redis deployment the counters are shared through (src/limits/redis-target.ts); `none`: no Redis configured. */
export type LimitTopology = 'none' | RedisTopology;

/** The one answer to a rate-limited request (RFC 6585 §4), with how long to wait (RFC 9110 §10.2.3). */
export function tooManyRequests(retryAfterSeconds: number): OAuthError {
  return new OAuthError('temporarily_unavailable', 'too many requests; retry later', {
    status: 429,
    headers: { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
  });
}

/** Seconds until `resetTime` (a window's end), or the whole window when the store did not say. */
export function secondsUntil(resetTime: Date | undefined, windowSeconds: number): number {
  return resetTime === undefined ? windowSeconds : (resetTime.getTime() - Date.now()) / 1000;
}
