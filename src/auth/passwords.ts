import { randomBytes } from 'node:crypto';
import argon2 from 'argon2';
import type { Argon2Params } from '../config.js';
import { type ConcurrencyLimit, createConcurrencyLimit } from '../limits/concurrency.js';
import { OAuthError } from '../oauth/errors.js';
import { startChildSpan } from '../telemetry/spans.js';
import { isCommonPassword } from './common-passwords.js';

/** Login input above this size is refused before any hashing, so nobody can make Argon2 chew a megabyte. */
export const MAX_PASSWORD_BYTES = 1024;
/** NIST SP 800-63B §3.1.1.2: at least 8, and allow at least 64. */
export const MIN_NEW_PASSWORD_LENGTH = 8;
export const MAX_NEW_PASSWORD_LENGTH = 256;

export type Argon2Operation = 'hash' | 'verify';

/** The span of each operation when tracing is on (README, Tracing); never an attribute of its input. */
const ARGON2_SPANS: Readonly<Record<Argon2Operation, string>> = { hash: 'argon2 hash', verify: 'argon2 verify' };

export interface PasswordHasher {
  /** How many Argon2 operations run and wait right now, and the most that ever ran at once. */
  readonly load: Pick<ConcurrencyLimit, 'active' | 'queued' | 'peak'>;
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
  /** True when the hash was made with other parameters than the configured ones. */
  needsRehash(hash: string): boolean;
  /**
   * A hash of a random password at the configured parameters. Verifying against it costs what a
   * real verify costs, so an unknown username cannot be told from a wrong password by its timing.
   */
  dummyHash(): Promise<string>;
}

/**
 * NIST SP 800-63B §5.1.1.2 suggests NFKC (or NFKD) before hashing, so the same password typed on
 * systems that compose accents differently still matches. Spaces are kept as typed.
 */
export function normalisePassword(password: string): string {
  return password.normalize('NFKC');
}

/**
 * Argon2id at the configured parameters. Every hash and verify goes through one bounded queue: at
 * most `maxConcurrent` run at once (each holds `memoryKib` of memory), at most `queueLimit` wait,
 * and past that the caller gets 503 temporarily_unavailable. So the memory Argon2 can take is
 * bounded by maxConcurrent x memoryKib whatever the flood (ATTACKS.md C4). `observe` learns how long
 * each operation took once it had its slot (the metrics' Argon2 histogram).
 */
export function createPasswordHasher(
  params: Argon2Params,
  bound: { readonly maxConcurrent: number; readonly queueLimit: number } = { maxConcurrent: 4, queueLimit: 64 },
  observe: (operation: Argon2Operation, seconds: number) => void = () => undefined,
): PasswordHasher {
  const limit = createConcurrencyLimit(
    bound.maxConcurrent,
    bound.queueLimit,
    () =>
      new OAuthError('temporarily_unavailable', 'the service is busy; retry shortly', {
        headers: { 'Retry-After': '1' },
      }),
  );
  const options = {
    type: argon2.argon2id,
    memoryCost: params.memoryKib,
    timeCost: params.iterations,
    parallelism: params.parallelism,
  } as const;
  let dummy: Promise<string> | undefined;
  const timed = async <T>(operation: Argon2Operation, work: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    // The work itself, once it has its slot (the wait shows as the gap before it in the trace).
    const span = startChildSpan(ARGON2_SPANS[operation]);
    try {
      return await work();
    } finally {
      span?.end();
      observe(operation, (performance.now() - start) / 1000);
    }
  };
  const hash = (password: string) => limit.run(() => timed('hash', () => argon2.hash(normalisePassword(password), options)));
  return {
    load: limit,
    hash,
    verify: (stored, password) =>
      limit.run(() =>
        timed('verify', async () => {
          try {
            return await argon2.verify(stored, normalisePassword(password));
          } catch {
            return false; // a malformed stored hash never matches
          }
        }),
      ),
    needsRehash: (stored) => argon2.needsRehash(stored, options),
    // A failed attempt (the queue was full) is not remembered: the next call tries again.
    dummyHash: () =>
      (dummy ??= hash(randomBytes(32).toString('base64url')).catch((error: unknown) => {
        dummy = undefined;
        throw error;
      })),
  };
}

/** A password Tessera makes up for an operator (CLI, admin API): 128 bits from the CSPRNG, shown once. */
export function generatePassword(): string {
  return randomBytes(16).toString('base64url');
}

/** Control characters would be truncated or mangled by some clients and logs: refuse them outright. */
export function hasControlCharacters(text: string): boolean {
  return /\p{Cc}/u.test(text);
}

/**
 * The policy for a new password (NIST SP 800-63B §3.1.1.2): length only, no composition rules,
 * no common passwords, not the username. Returns what is wrong, or undefined.
 */
export function checkNewPassword(password: string, username?: string): string | undefined {
  const normalised = normalisePassword(password);
  const length = [...normalised].length;
  if (length < MIN_NEW_PASSWORD_LENGTH) return `the password must have at least ${MIN_NEW_PASSWORD_LENGTH} characters`;
  if (length > MAX_NEW_PASSWORD_LENGTH) return `the password must have at most ${MAX_NEW_PASSWORD_LENGTH} characters`;
  if (hasControlCharacters(normalised)) return 'the password must not contain control characters';
  if (normalised.trim() === '') return 'the password must not be only spaces';
  if (isCommonPassword(normalised)) return 'the password is too common; choose another';
  if (username !== undefined && normalised.toLowerCase() === username.toLowerCase()) {
    return 'the password must not be the username';
  }
  return undefined;
}
