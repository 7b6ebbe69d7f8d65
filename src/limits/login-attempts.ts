import { createHash, randomUUID } from 'node:crypto';
import type { Options } from 'express-rate-limit';
import { ipKeyGenerator } from 'express-rate-limit';
import { SYSTEM } from '../audit/entry.js';
import type { RecordAudit } from '../audit/writer.js';
import { normaliseUsername } from '../auth/usernames.js';
import type { LimitSetting, RateLimitConfig } from '../config.js';
import { FailoverStore } from './failover-store.js';
import { InFlightSlots } from './in-flight-slots.js';
import { type LimitLayer, secondsUntil, tooManyRequests } from './layers.js';
import type { RedisLink } from './redis.js';

/** A source that has logged in to an account is remembered this long (see login_account). */
const KNOWN_SOURCE_DAYS = 30;
/** Longer than any verification takes (Argon2 and its queue, a database lookup): a dead process's slot lapses after this. */
const IN_FLIGHT_TTL_MS = 30_000;
/** While other guesses at the account are being verified, retry this soon: they will have finished. */
const BUSY_RETRY_AFTER_SECONDS = 1;

/**
 * What one password verification proved. Only a verified wrong password counts against an
 * account (an unknown user's dummy verification is one, so an unknown account looks like a known
 * one); a right password clears the counts; anything else (a disabled user's right password)
 * counts for nothing.
 */
export type LoginVerdict = 'wrong_password' | 'right_password' | 'not_counted';

/**
 * The account layers, for every place that verifies a user's password (the password grant, a
 * password change). Nothing counts here but the verification's verdict: a request refused
 * earlier (a bad request, an invented client, another layer) never reaches this, and a request
 * refused here never counts.
 *
 * - login_ip_account: wrong passwords per client IP (IPv6 by prefix) and account: one source
 *   guessing one account is stopped long before the account layer.
 * - login_account: wrong passwords per account from all IPs, at most 100 (NIST SP 800-63B §5.2.2),
 *   cleared by a right one. It does not apply to a source that has logged in to the account in the
 *   last 30 days: 100 guesses from elsewhere cannot lock the owner out from where the owner
 *   usually is (the lock-out Keycloak's own documentation warns about).
 *
 * Checking a count and counting later races: N guesses at once at an account one failure short of
 * its limit would all pass the check. So each verification holds a slot per layer (Redis, shared by
 * every replica) from before it reads the count until after it has counted, and is refused
 * (`Retry-After: 1`) while the failures plus the verifications in flight would pass the limit.
 * While Redis answers and every verification ends within 30 s, no layer ever verifies more wrong
 * passwords per window than its limit. Slots are never failures: they end with their request.
 */
export interface LoginAttempts {
  /**
   * Runs `verify` for `username` from `ip`, or refuses it with 429 `temporarily_unavailable` (with
   * `Retry-After`) without running it, and counts its verdict.
   */
  attempt<T>(ip: string, username: string, verify: () => Promise<{ verdict: LoginVerdict; result: T }>): Promise<T>;
}

interface AccountLayer {
  readonly layer: LimitLayer;
  readonly setting: LimitSetting;
  readonly failures: FailoverStore;
  readonly inFlight: InFlightSlots;
}

export function createLoginAttempts(
  config: RateLimitConfig,
  redis: RedisLink | undefined,
  recordAudit: RecordAudit,
  rejected: (layer: LimitLayer) => void,
): LoginAttempts {
  const store = (name: string, windowMs: number) => {
    const created = new FailoverStore(redis, `${config.prefix}${name}:`);
    created.init({ windowMs } as Options);
    return created;
  };
  const layer = (name: 'login_ip_account' | 'login_account', setting: LimitSetting): AccountLayer => ({
    layer: name,
    setting,
    failures: store(name, setting.window * 1000),
    inFlight: new InFlightSlots(redis, `${config.prefix}${name}_in_flight:`, IN_FLIGHT_TTL_MS),
  });
  const ipAccount = layer('login_ip_account', config.loginIpAccount);
  const account = layer('login_account', config.loginAccount);
  const knownSources = store('known_source', KNOWN_SOURCE_DAYS * 86_400_000);

  const refuse = (layer: LimitLayer, seconds: number) => {
    rejected(layer);
    return tooManyRequests(seconds);
  };

  return {
    async attempt(ip, username, verify) {
      const accountId = accountKey(username);
      const source = `${ipKeyGenerator(ip, config.ipv6Subnet)}|${accountId}`;
      const slot = randomUUID();
      const layers: [AccountLayer, string][] = [[ipAccount, source]];
      // A right password's resets, sent with the slots' release (below).
      let cleared: Promise<unknown> = Promise.resolve();
      try {
        // The slot first, then the count: a concurrent guess either sees this one's slot or its
        // failure. Whether the source is known (so whether the account layer applies) is read
        // beside the first slot: a known source, the usual login, waits on Redis twice before verifying.
        const [knownCount, ipAccountHeld] = await Promise.all([knownSources.get(source), ipAccount.inFlight.reserve(source, slot)]);
        const held = [ipAccountHeld];
        if ((knownCount?.totalHits ?? 0) === 0) {
          layers.push([account, accountId]);
          held.push(await account.inFlight.reserve(accountId, slot));
        }
        const counts = await Promise.all(layers.map(([layer, key]) => layer.failures.get(key)));
        layers.forEach(([layer], i) => {
          if ((counts[i]?.totalHits ?? 0) >= layer.setting.limit) {
            throw refuse(layer.layer, secondsUntil(counts[i]?.resetTime, layer.setting.window));
          }
        });
        layers.forEach(([layer], i) => {
          if ((counts[i]?.totalHits ?? 0) + held[i]! > layer.setting.limit) throw refuse(layer.layer, BUSY_RETRY_AFTER_SECONDS);
        });

        const { verdict, result } = await verify();
        if (verdict === 'wrong_password') {
          // Counted before the slot is given back, so that the two never both look free.
          await Promise.all(
            layers.map(async ([layer, key]) => {
              const { totalHits } = await layer.failures.increment(key);
              // Once per key and window: the count reaches the limit once. The account by its hash, never as typed.
              if (totalHits === layer.setting.limit) recordAudit('rate_limit_tripped', { layer: layer.layer, ip, account: accountId }, SYSTEM, 'warn');
            }),
          );
        } else if (verdict === 'right_password') {
          // Lowering a count needs no order with the release: a guess that sees the slot gone and
          // the count not yet cleared is only refused sooner. So both go in the same round trip.
          cleared = Promise.all([ipAccount.failures.resetKey(source), account.failures.resetKey(accountId), knownSources.restart(source)]);
        }
        return result;
      } finally {
        await Promise.all([cleared, ...layers.map(([layer, key]) => layer.inFlight.release(key, slot))]);
      }
    },
  };
}

/** The account a username names, as a hash of its normalised form: the same key whether or not it exists. */
function accountKey(username: string): string {
  const canonical = normaliseUsername(username) ?? username.trim().toLowerCase();
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 22);
}
