import { createHash } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, rateLimit, type RateLimitRequestHandler } from 'express-rate-limit';
import type { Logger } from 'pino';
import { audit } from '../audit.js';
import { normaliseUsername } from '../auth/usernames.js';
import type { LimitSetting, RateLimitConfig } from '../config.js';
import { OAuthError } from '../oauth/errors.js';
import { FailoverStore } from './failover-store.js';
import type { RedisLink } from './redis.js';

export type LimitLayer = 'login_ip' | 'login_ip_account' | 'login_account' | 'client' | 'password_change' | 'register';
export type LimitBackend = 'redis' | 'memory' | 'memory_fallback';

/**
 * The brute-force layers (DESIGN.md), as express-rate-limit middlewares. All run after the body
 * is parsed and before any client authentication or Argon2 work:
 *
 * - login_ip: password-grant requests per client IP (IPv6 by prefix): stops username spraying.
 * - login_ip_account: failed logins per IP and account; a successful login clears it. It stops
 *   one source guessing one account long before the account layer is reached, so an attacker
 *   cannot use that layer to lock the owner out cheaply from one place.
 * - login_account: failed logins per account from all IPs, capped at 100 (NIST SP 800-63B
 *   §5.2.2): stops a distributed guess at one account.
 * - client: refresh, revoke and introspection requests per client and source IP: protects the database.
 *
 * Only `invalid_grant` answers count as failed logins. Accounts are keyed by a hash of the
 * normalised username, known or not, so a limited unknown account looks exactly like a known one.
 */
export interface RateLimits {
  /** For POST /token: the login layers for the password grant, the client layer for the others. */
  readonly token: RequestHandler[];
  /** For /refresh, /revoke, /introspect. */
  readonly client: RequestHandler[];
  /** For POST /users/me/password. */
  readonly passwordChange: RequestHandler[];
  /** For POST /register. */
  readonly register: RequestHandler[];
  backend(): LimitBackend;
  /** Stops the memory stores' timers and closes the Redis connection. */
  close(): Promise<void>;
}

export function createRateLimits(config: RateLimitConfig, redis: RedisLink | undefined, log: Logger): RateLimits {
  const stores: FailoverStore[] = [];
  const limiter = (layer: LimitLayer, setting: LimitSetting, options: Partial<Parameters<typeof rateLimit>[0]>) => {
    const store = new FailoverStore(redis, `${config.prefix}${layer}:`);
    stores.push(store);
    return rateLimit({
      windowMs: setting.window * 1000,
      limit: setting.limit,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      identifier: layer,
      store,
      handler: (req: Request) => {
        const info = (req as Request & { rateLimit?: { used: number; limit: number } }).rateLimit;
        // One event per key and window (the first refusal), not one per refused request.
        if (info && info.used === info.limit + 1) audit(log, 'rate_limit_tripped', { layer, ip: req.ip }, 'warn');
        throw new OAuthError('temporarily_unavailable', 'too many requests; retry later', { status: 429 });
      },
      ...options,
    });
  };
  const ip = (req: Request) => ipKeyGenerator(req.ip ?? '', config.ipv6Subnet);
  const isPasswordGrant = (req: Request) => bodyField(req, 'grant_type') === 'password';
  const failedLogin = (_req: Request, res: Response) => res.locals['oauthError'] !== 'invalid_grant';

  const loginIp = limiter('login_ip', config.loginIp, { keyGenerator: ip, skip: (req) => !isPasswordGrant(req) });
  const loginIpAccount = limiter('login_ip_account', config.loginIpAccount, {
    keyGenerator: (req) => `${ip(req)}|${accountKey(req)}`,
    skip: (req) => !isPasswordGrant(req) || accountKey(req) === undefined,
    skipSuccessfulRequests: true,
    requestWasSuccessful: failedLogin,
  });
  const loginAccount = limiter('login_account', config.loginAccount, {
    keyGenerator: (req) => accountKey(req)!,
    skip: (req) => !isPasswordGrant(req) || accountKey(req) === undefined,
    skipSuccessfulRequests: true,
    requestWasSuccessful: failedLogin,
  });
  // Per client and source: a noisy gateway is slowed, but nobody who merely knows a client id
  // (it is no secret) can spend that client's budget from elsewhere.
  const client = limiter('client', config.client, {
    keyGenerator: (req) => `${claimedClient(req) ?? 'anonymous'}|${ip(req)}`,
  });
  // On /token the password grant has its own layers; every other grant counts per client.
  const clientUnlessPassword: RequestHandler = (req, res, next) => (isPasswordGrant(req) ? next() : client(req, res, next));
  // Changing a password proves the current one: guesses with a stolen access token count per IP.
  const passwordChange = limiter('password_change', config.loginIp, { keyGenerator: ip });
  // Self-registration costs an Argon2 hash and a row: per IP, like logins.
  const register = limiter('register', config.loginIp, { keyGenerator: ip });

  return {
    token: [loginIp, loginIpAccount, loginAccount, clearOnSuccess(loginIpAccount, (req) => `${ip(req)}|${accountKey(req)}`), clientUnlessPassword],
    client: [client],
    passwordChange: [passwordChange],
    register: [register],
    backend: () => (redis === undefined ? 'memory' : redis.isUsable() ? 'redis' : 'memory_fallback'),
    async close() {
      for (const store of stores) store.shutdown();
      await redis?.close();
    },
  };
}

/** A successful login clears that IP and account's failure count. */
function clearOnSuccess(layer: RateLimitRequestHandler, key: (req: Request) => string): RequestHandler {
  return (req, res, next) => {
    if (bodyField(req, 'grant_type') === 'password') {
      res.once('finish', () => {
        if (res.statusCode === 200) void Promise.resolve(layer.resetKey(key(req))).catch(() => undefined);
      });
    }
    next();
  };
}

function bodyField(req: Request, name: string): string | undefined {
  const value: unknown = (req.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}

/** The account a login names, as a hash of its normalised username: the same key whether or not it exists. */
function accountKey(req: Request): string | undefined {
  const username = bodyField(req, 'username');
  if (username === undefined || username.trim() === '') return undefined;
  const canonical = normaliseUsername(username) ?? username.trim().toLowerCase();
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 22);
}

/** The client a request claims to be (before authentication): enough to pick a counter. */
function claimedClient(req: Request): string | undefined {
  const basic = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(req.get('authorization')?.trim() ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const id = decoded.slice(0, Math.max(0, decoded.indexOf(':')));
    if (id !== '') return `client:${id.slice(0, 128)}`;
  }
  const id = bodyField(req, 'client_id');
  return id ? `client:${id.slice(0, 128)}` : undefined;
}
