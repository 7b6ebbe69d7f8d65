import type { Options } from 'express-rate-limit';
import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import type { Logger } from 'pino';
import { audit } from '../audit.js';
import type { LimitSetting, RateLimitConfig } from '../config.js';
import { FailoverStore } from './failover-store.js';
import { type LimitBackend, type LimitLayer, secondsUntil, tooManyRequests } from './layers.js';
import { createLoginAttempts, type LoginAttempts } from './login-attempts.js';
import type { RedisLink } from './redis.js';

export type { LimitBackend, LimitLayer } from './layers.js';

/**
 * The brute-force layers (DESIGN.md). The request layers are express-rate-limit middlewares that
 * count every request of their key, announce themselves in RateLimit headers, and run after the
 * body is parsed and before any client authentication, token check or Argon2 work:
 *
 * - login_ip: password-grant requests per client IP (IPv6 by prefix): stops username spraying.
 *   It counts the source's own requests only, so it can limit no one but that source.
 * - client: refresh, revoke, introspection and client-credentials requests per source IP: protects
 *   the database from a runaway (or invented) client; counted before client authentication, so
 *   invented client ids buy no fresh budget.
 * - password_change, register, admin: per IP, for those endpoints.
 *
 * The account layers (login_ip_account, login_account) count verified wrong passwords only, where
 * a password is verified: `logins`, src/limits/login-attempts.ts.
 *
 * Memory is bounded per layer (src/limits/failover-store.ts).
 */
export interface RateLimits {
  /** For POST /token: login_ip for the password grant, the client layer for the others. */
  readonly token: RequestHandler[];
  /** For /refresh, /revoke, /introspect. */
  readonly client: RequestHandler[];
  /** For POST /users/me/password, per IP. */
  readonly passwordChange: RequestHandler[];
  /** For POST /register. */
  readonly register: RequestHandler[];
  /** For /admin/...: per IP, before the token is checked. */
  readonly admin: RequestHandler[];
  /** The account layers, around every verification of a user's password. */
  readonly logins: LoginAttempts;
  backend(): LimitBackend;
  /** Closes the Redis connection. */
  close(): Promise<void>;
}

export function createRateLimits(
  config: RateLimitConfig,
  redis: RedisLink | undefined,
  log: Logger,
  rejected: (layer: LimitLayer) => void,
): RateLimits {
  const limiter = (layer: LimitLayer, setting: LimitSetting, options: Partial<Options> = {}) =>
    rateLimit({
      windowMs: setting.window * 1000,
      limit: setting.limit,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      identifier: layer,
      store: new FailoverStore(redis, `${config.prefix}${layer}:`),
      keyGenerator: (req) => ipKeyGenerator(req.ip ?? '', config.ipv6Subnet),
      handler: (req: Request) => {
        const info = (req as Request & { rateLimit?: { used: number; limit: number; resetTime?: Date } }).rateLimit;
        // One event per key and window (the first refusal), not one per refused request.
        if (info && info.used === info.limit + 1) audit(log, 'rate_limit_tripped', { layer, ip: req.ip }, 'warn');
        rejected(layer); // every refusal, unlike the audit event
        throw tooManyRequests(secondsUntil(info?.resetTime, setting.window));
      },
      ...options,
    });

  const loginIp = limiter('login_ip', config.loginIp, { skip: (req) => bodyField(req, 'grant_type') !== 'password' });
  const client = limiter('client', config.client);
  // On /token the password grant has its own layers; every other grant counts in the client layer.
  const clientUnlessPassword: RequestHandler = (req, res, next) =>
    bodyField(req, 'grant_type') === 'password' ? next() : client(req, res, next);
  // Changing a password proves the current one: the requests of one source, whatever account (the account layers count the guesses).
  const passwordChange = limiter('password_change', config.loginIp);
  // Self-registration costs an Argon2 hash and a row: per IP, like logins.
  const register = limiter('register', config.loginIp);
  // The admin API: per IP at the client layer's rate, counted apart so admin work and gateway traffic never starve each other.
  const admin = limiter('admin', config.client);

  return {
    token: [loginIp, clientUnlessPassword],
    client: [client],
    passwordChange: [passwordChange],
    register: [register],
    admin: [admin],
    logins: createLoginAttempts(config, redis, log, rejected),
    backend: () => (redis === undefined ? 'memory' : redis.isUsable() ? 'redis' : 'memory_fallback'),
    close: async () => redis?.close(),
  };
}

function bodyField(req: Request, name: string): string | undefined {
  const value: unknown = (req.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}
