import { createHash } from 'node:crypto';
import type { Options } from 'express-rate-limit';
import type { Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import type { Logger } from 'pino';
import { audit } from '../audit.js';
import { normaliseUsername } from '../auth/usernames.js';
import type { LimitSetting, RateLimitConfig } from '../config.js';
import type { Metrics } from '../metrics.js';
import { OAuthError } from '../oauth/errors.js';
import { FailoverStore } from './failover-store.js';
import type { RedisLink } from './redis.js';

export type LimitLayer = 'login_ip' | 'login_ip_account' | 'login_account' | 'client' | 'password_change' | 'register' | 'admin';
export type LimitBackend = 'redis' | 'memory' | 'memory_fallback';

/** A source that has logged in to an account is remembered this long (see login_account). */
const KNOWN_SOURCE_DAYS = 30;

/**
 * The brute-force layers (DESIGN.md), as express-rate-limit middlewares. All run after the body
 * is parsed and before any client authentication or Argon2 work:
 *
 * - login_ip: password-grant requests per client IP (IPv6 by prefix): stops username spraying.
 * - login_ip_account: failed logins per IP and account; a success clears it. One source guessing
 *   one account is stopped long before the account layer.
 * - login_account: failed logins per account from all IPs, at most 100 (NIST SP 800-63B §5.2.2),
 *   cleared by a success ("consecutive" failures). It stops a distributed guess at one account.
 *   It does not apply to a source (IP, or IPv6 prefix) that has logged in to that account in the
 *   last 30 days: an attacker spending 100 guesses from elsewhere cannot lock the owner out from
 *   where the owner usually is (the lock-out Keycloak's own documentation warns about).
 * - client: refresh, revoke, introspection and client-credentials requests per source IP: protects
 *   the database from a runaway (or invented) client; counted before client authentication, so
 *   invented client ids buy no fresh budget.
 *
 * Only `invalid_grant` answers count as failed logins. Accounts are keyed by a hash of the
 * normalised username, known or not, so a limited unknown account looks exactly like a known one.
 * Only the IP-keyed layers announce themselves in RateLimit headers: an account's failure count
 * is nobody's business. Memory is bounded per layer (src/limits/failover-store.ts).
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
  /** For /admin/...: per IP, before the token is checked. */
  readonly admin: RequestHandler[];
  backend(): LimitBackend;
  /** Closes the Redis connection. */
  close(): Promise<void>;
}

type LimiterOptions = Partial<Options> & { readonly announce?: boolean };

export function createRateLimits(
  config: RateLimitConfig,
  redis: RedisLink | undefined,
  log: Logger,
  metrics: Pick<Metrics, 'rateLimitRejected'>,
): RateLimits {
  const store = (name: string, windowMs: number) => {
    const created = new FailoverStore(redis, `${config.prefix}${name}:`);
    created.init({ windowMs } as Options);
    return created;
  };
  const limiter = (layer: LimitLayer, setting: LimitSetting, { announce = true, ...options }: LimiterOptions) =>
    rateLimit({
      windowMs: setting.window * 1000,
      limit: setting.limit,
      standardHeaders: announce ? 'draft-8' : false,
      legacyHeaders: false,
      identifier: layer,
      store: new FailoverStore(redis, `${config.prefix}${layer}:`),
      handler: (req: Request, res: Response) => {
        const info = (req as Request & { rateLimit?: { used: number; limit: number; resetTime?: Date } }).rateLimit;
        // One event per key and window (the first refusal), not one per refused request.
        // The account layers name the account by its hash (never the username as typed, which may be a password).
        const account = layer === 'login_account' || layer === 'login_ip_account' ? { account: accountKey(req) } : {};
        if (info && info.used === info.limit + 1) audit(log, 'rate_limit_tripped', { layer, ip: req.ip, ...account }, 'warn');
        metrics.rateLimitRejected(layer); // every refusal, unlike the audit event
        if (!res.get('Retry-After')) {
          const seconds = info?.resetTime ? Math.ceil((info.resetTime.getTime() - Date.now()) / 1000) : setting.window;
          res.set('Retry-After', String(Math.max(1, seconds)));
        }
        res.locals['limitedBy'] = layer;
        throw new OAuthError('temporarily_unavailable', 'too many requests; retry later', { status: 429 });
      },
      ...options,
    });

  const ip = (req: Request) => ipKeyGenerator(req.ip ?? '', config.ipv6Subnet);
  const ipAccount = (req: Request) => `${ip(req)}|${accountKey(req)}`;
  const isLogin = (req: Request) => bodyField(req, 'grant_type') === 'password' && accountKey(req) !== undefined;
  // Failure layers count wrong passwords only: anything else is given back once answered, except
  // the layer's own refusals, which must keep the count over the limit (or every refusal would
  // drop it back to the limit, and each next one would trip the layer, and log, afresh).
  const countsAsSuccess = (layer: LimitLayer) => (_req: Request, res: Response) =>
    res.locals['oauthError'] !== 'invalid_grant' && res.locals['limitedBy'] !== layer;
  const knownSources = store('known_source', KNOWN_SOURCE_DAYS * 86_400_000);
  const isKnownSource = async (req: Request) => ((await knownSources.get(ipAccount(req)))?.totalHits ?? 0) > 0;

  const loginIp = limiter('login_ip', config.loginIp, {
    keyGenerator: ip,
    skip: (req) => bodyField(req, 'grant_type') !== 'password',
  });
  const loginIpAccount = limiter('login_ip_account', config.loginIpAccount, {
    announce: false,
    keyGenerator: ipAccount,
    skip: (req) => !isLogin(req),
    skipSuccessfulRequests: true,
    requestWasSuccessful: countsAsSuccess('login_ip_account'),
  });
  const loginAccount = limiter('login_account', config.loginAccount, {
    announce: false,
    keyGenerator: (req) => accountKey(req)!,
    skip: async (req) => !isLogin(req) || (await isKnownSource(req)),
    skipSuccessfulRequests: true,
    requestWasSuccessful: countsAsSuccess('login_account'),
  });
  /** A successful login clears the failure counts and remembers the source for the account. */
  const afterLogin: RequestHandler = (req, res, next) => {
    if (isLogin(req)) {
      res.once('finish', () => {
        if (res.statusCode !== 200) return;
        void Promise.all([
          loginIpAccount.resetKey(ipAccount(req)),
          loginAccount.resetKey(accountKey(req)!),
          knownSources.resetKey(ipAccount(req)).then(() => knownSources.increment(ipAccount(req))),
        ]).catch(() => undefined);
      });
    }
    next();
  };
  const client = limiter('client', config.client, { keyGenerator: ip });
  // On /token the password grant has its own layers; every other grant counts in the client layer.
  const clientUnlessPassword: RequestHandler = (req, res, next) =>
    bodyField(req, 'grant_type') === 'password' ? next() : client(req, res, next);
  // Changing a password proves the current one: guesses with a stolen access token count per IP.
  const passwordChange = limiter('password_change', config.loginIp, { keyGenerator: ip });
  // Self-registration costs an Argon2 hash and a row: per IP, like logins.
  const register = limiter('register', config.loginIp, { keyGenerator: ip });
  // The admin API: per IP at the client layer's rate, counted apart so admin work and gateway traffic never starve each other.
  const admin = limiter('admin', config.client, { keyGenerator: ip });

  return {
    token: [loginIp, loginIpAccount, loginAccount, afterLogin, clientUnlessPassword],
    client: [client],
    passwordChange: [passwordChange],
    register: [register],
    admin: [admin],
    backend: () => (redis === undefined ? 'memory' : redis.isUsable() ? 'redis' : 'memory_fallback'),
    close: async () => redis?.close(),
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
