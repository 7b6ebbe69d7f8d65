import { createHash } from 'node:crypto';
import type { Options } from 'express-rate-limit';
import type { Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { SYSTEM } from '../audit/entry.js';
import type { RecordAudit } from '../audit/writer.js';
import type { LimitSetting, RateLimitConfig } from '../config.js';
import type { Client } from '../db/schema.js';
import { watchBlockedSources } from './blocked-sources.js';
import { FailoverStore } from './failover-store.js';
import { type LimitBackend, type LimitLayer, type LimitTopology, secondsUntil, tooManyRequests } from './layers.js';
import { createLoginAttempts, type LoginAttempts } from './login-attempts.js';
import type { RedisLink } from './redis.js';

export type { LimitBackend, LimitLayer, LimitTopology } from './layers.js';

/**
 * The brute-force layers (DESIGN.md). The request layers are express-rate-limit middlewares that
 * count every request of their key, announce themselves in RateLimit headers, and run after the
 * body is parsed and before any client authentication, token check or Argon2 work:
 *
 * - login_ip: password-grant requests per client IP (IPv6 by prefix): stops username spraying.
 *   It counts the source's own requests only, so it can limit no one but that source.
 * - password_change, register, admin: the same, per IP, for those endpoints.
 * - password_reset: POST /password-reset and /password-reset/confirm per IP (LOGIN_IP_*).
 * - password_reset_account: reset requests per account named (username or email, as a hash, the
 *   same key whether or not it exists), PASSWORD_RESET_ACCOUNT_* (default 5 an hour): a
 *   mailbox cannot be flooded with reset mail, whoever asks.
 *
 * The others count only what failed for the right reason, at the point where that is known:
 *
 * - login_ip_account, login_account: verified wrong passwords (`logins`, src/limits/login-attempts.ts).
 * - client_auth: failed client authentications per client IP. Checked before the client is looked
 *   up, so a flood of invented clients from one source stops costing the database anything;
 *   counted only once a client authentication has failed, so a gateway with valid credentials,
 *   however busy, is never counted here. The check costs no Redis round trip: a source whose count
 *   reaches the limit goes into a set in Redis and is announced over pub/sub, and each process
 *   answers from its copy of that set (src/limits/blocked-sources.ts). While the copy may be
 *   incomplete (not subscribed, being read again, full, Redis failing) the count is read per
 *   request, as before, from Redis or, without it, from memory.
 * - client: refresh, revoke, introspection and client-credentials requests per authenticated
 *   client, once it is authenticated: off unless the client has a rate limit of its own or
 *   CLIENT_RATE_LIMIT sets a default (one gateway is one client for all its users).
 *
 * Memory is bounded per layer (src/limits/failover-store.ts).
 */
export interface RateLimits {
  /** For POST /token, before client authentication: login_ip, for the password grant. */
  readonly token: RequestHandler[];
  /** For POST /authorize (the hosted sign-in page's form): login_ip, the same layer and counts as the password grant's. */
  readonly signIn: RequestHandler[];
  /** For POST /users/me/password, per IP. */
  readonly passwordChange: RequestHandler[];
  /** For POST /register. */
  readonly register: RequestHandler[];
  /** For /admin/...: per IP, before the token is checked. */
  readonly admin: RequestHandler[];
  /** For POST /password-reset and /password-reset/confirm, per IP. */
  readonly passwordReset: RequestHandler[];
  /** Counts a reset request for the account `key` names (any string; hashed here): 429 beyond the limit. */
  countResetRequest(ip: string, key: string): Promise<void>;
  /** The account layers, around every verification of a user's password. */
  readonly logins: LoginAttempts;
  /** client_auth and client, around client authentication (src/http/client-authentication.ts). */
  readonly clients: ClientLayers;
  backend(): LimitBackend;
  /** Whether client_auth answers from its synced copy of the blocks, without Redis (undefined without Redis). */
  readonly clientAuthBlocksSynced: (() => boolean) | undefined;
  /** Which Redis deployment `redis` means: one server, Sentinel or Cluster (fixed at start-up). */
  readonly topology: LimitTopology;
  /** Closes the Redis connection. */
  close(): Promise<void>;
}

export interface ClientLayers {
  /** Before a client is looked up: 429 for a source whose client authentications keep failing. */
  checkSource(ip: string): Promise<void>;
  /** A client authentication from `ip` failed (invalid_client). */
  sourceFailed(ip: string): Promise<void>;
  /** Counts a request of an authenticated client against its limit, if it has one: 429 beyond. */
  countRequest(req: Request, res: Response, client: Client): Promise<void>;
}

/** Where the per-client limiter finds the authenticated client (res.locals). */
const CLIENT = 'rateLimitedClient';

export function createRateLimits(
  config: RateLimitConfig,
  redis: RedisLink | undefined,
  recordAudit: RecordAudit,
  rejected: (layer: LimitLayer) => void,
): RateLimits {
  const limiter = (layer: LimitLayer, window: number, options: Partial<Options>) =>
    rateLimit({
      windowMs: window * 1000,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      identifier: layer,
      store: new FailoverStore(redis, `${config.prefix}${layer}:`),
      handler: (req: Request, res: Response) => {
        const info = (req as Request & { rateLimit?: { used: number; limit: number; resetTime?: Date } }).rateLimit;
        // One event per key and window (the first refusal), not one per refused request.
        const client = layer === 'client' ? { client_id: clientOf(res).id } : {};
        if (info && info.used === info.limit + 1) {
          recordAudit('rate_limit_tripped', { layer, ip: req.ip, ...client }, { ...SYSTEM, requestId: requestIdOf(res) }, 'warn');
        }
        rejected(layer); // every refusal, unlike the audit event
        throw tooManyRequests(secondsUntil(info?.resetTime, window));
      },
      ...options,
    });
  const perIp = (layer: LimitLayer, setting: LimitSetting, options: Partial<Options> = {}) =>
    limiter(layer, setting.window, { limit: setting.limit, keyGenerator: (req) => ipKeyGenerator(req.ip ?? '', config.ipv6Subnet), ...options });
  const ipKey = (ip: string) => ipKeyGenerator(ip, config.ipv6Subnet);

  const loginIpLimiter = perIp('login_ip', config.loginIp);
  // Only the password grant is counted here: every other token request goes straight on, without
  // entering the limiter at all (its skip() still cost each refresh a few promises and lookups).
  const loginIp: RequestHandler = (req, res, next) => (bodyField(req, 'grant_type') === 'password' ? loginIpLimiter(req, res, next) : next());
  // Changing a password proves the current one: the requests of one source, whatever account (the account layers count the guesses).
  const passwordChange = perIp('password_change', config.loginIp);
  // Self-registration costs an Argon2 hash and a row: per IP, like logins.
  const register = perIp('register', config.loginIp);
  // The admin API: per IP, counted apart so admin work and gateway traffic never starve each other.
  const admin = perIp('admin', config.admin);
  // Password reset: per IP like logins, and per account below.
  const passwordReset = perIp('password_reset', config.loginIp);
  const resetRequests = new FailoverStore(redis, `${config.prefix}password_reset_account:`);
  resetRequests.init({ windowMs: config.passwordResetAccount.window * 1000 } as Options);

  const limitOf = (client: Client) => client.rate_limit ?? config.client.limit;
  const clientOf = (res: Response) => res.locals[CLIENT] as Client;
  const perClient = limiter('client', config.client.window, {
    // Entered only for a client with a limit (countRequest below).
    limit: (_req, res) => limitOf(clientOf(res))!,
    keyGenerator: (_req, res) => clientOf(res).id,
  });

  const failures = new FailoverStore(redis, `${config.prefix}client_auth:`);
  failures.init({ windowMs: config.clientAuthFailure.window * 1000 } as Options);
  const blocks = redis && watchBlockedSources(redis, `${config.prefix}client_auth:blocked`);
  const clients: ClientLayers = {
    async checkSource(ip) {
      const { limit, window } = config.clientAuthFailure;
      const key = ipKey(ip);
      if (blocks?.isComplete()) {
        // Every replica's blocks are known here: no Redis round trip (src/limits/blocked-sources.ts).
        const until = blocks.blockedUntil(key);
        if (until === undefined) return;
        rejected('client_auth');
        throw tooManyRequests(secondsUntil(new Date(until), window));
      }
      const info = await failures.get(key);
      if ((info?.totalHits ?? 0) >= limit) {
        rejected('client_auth');
        throw tooManyRequests(secondsUntil(info?.resetTime, window));
      }
    },
    async sourceFailed(ip) {
      const { limit, window } = config.clientAuthFailure;
      const key = ipKey(ip);
      const { totalHits, resetTime, shared } = await failures.incrementShared(key);
      // Once per key and window: the count reaches the limit once.
      if (totalHits === limit) recordAudit('rate_limit_tripped', { layer: 'client_auth', ip }, SYSTEM, 'warn');
      // At and past it (a replica whose announcement was lost is corrected by the next failure anywhere).
      if (totalHits >= limit) await blocks?.block(key, resetTime?.getTime() ?? Date.now() + window * 1000, shared);
    },
    countRequest: (req, res, client) =>
      // No limit for this client (CLIENT_RATE_LIMIT unset, the default): not even a skip() inside
      // express-rate-limit, whose wrapper cost every request a few promises and lookups.
      limitOf(client) === undefined
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            res.locals[CLIENT] = client;
            void perClient(req, res, (error?: unknown) => (error === undefined ? resolve() : reject(error)));
          }),
  };

  return {
    token: [loginIp],
    signIn: [loginIpLimiter],
    passwordChange: [passwordChange],
    register: [register],
    admin: [admin],
    passwordReset: [passwordReset],
    async countResetRequest(ip, key) {
      const account = createHash('sha256').update(key).digest('base64url').slice(0, 22);
      const { totalHits, resetTime } = await resetRequests.increment(account);
      const { limit, window } = config.passwordResetAccount;
      if (totalHits <= limit) return;
      if (totalHits === limit + 1) recordAudit('rate_limit_tripped', { layer: 'password_reset_account', ip, account }, SYSTEM, 'warn');
      rejected('password_reset_account');
      throw tooManyRequests(secondsUntil(resetTime, window));
    },
    logins: createLoginAttempts(config, redis, recordAudit, rejected),
    clients,
    backend: () => (redis === undefined ? 'memory' : redis.isUsable() ? 'redis' : 'memory_fallback'),
    clientAuthBlocksSynced: blocks && (() => blocks.isComplete()),
    topology: redis?.topology ?? 'none',
    close: async () => {
      blocks?.close();
      await redis?.close();
    },
  };
}

function bodyField(req: Request, name: string): string | undefined {
  const value: unknown = (req.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}

/** The X-Request-Id the request log gave this request (src/http/request-log.ts). */
function requestIdOf(res: Response): string | undefined {
  const id = res.getHeader('X-Request-Id');
  return typeof id === 'string' ? id : undefined;
}
