import { checkIssuer, isOrigin, parseTrustProxy, readPasswordReset, type TrustProxy } from './config-checks.js';
import { parseDuration } from './duration.js';
import { hashTagOf, parseRedisTarget, type RedisTarget } from './limits/redis-target.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type { TrustProxy } from './config-checks.js';

export interface Argon2Params {
  readonly memoryKib: number;
  readonly iterations: number;
  readonly parallelism: number;
}

/** One limiter layer: at most `limit` counted events per `window` seconds. */
export interface LimitSetting {
  readonly limit: number;
  readonly window: number;
}

/** Brute-force defence (DESIGN.md): see src/limits/ and the README for what each layer counts. */
export interface RateLimitConfig {
  /** Redis key prefix, so several deployments can share one Redis. */
  readonly prefix: string;
  /** Password-grant requests per client IP. */
  readonly loginIp: LimitSetting;
  /** Failed logins per client IP and account. */
  readonly loginIpAccount: LimitSetting;
  /** Failed logins per account, from all IPs (NIST SP 800-63B: at most 100). */
  readonly loginAccount: LimitSetting;
  /** Failed client authentications per client IP, counted before the next one reaches the database. */
  readonly clientAuthFailure: LimitSetting;
  /**
   * Refresh, revoke, introspection and client-credentials requests per authenticated client, in
   * `window`: `limit` is the default for clients without a rate limit of their own; undefined, none.
   */
  readonly client: { readonly limit: number | undefined; readonly window: number };
  /** Admin API requests per client IP. */
  readonly admin: LimitSetting;
  /** Password-reset requests per account (by the username or email asked for, whether or not it exists). */
  readonly passwordResetAccount: LimitSetting;
  /** IPv6 addresses are counted per prefix of this length, so a host cannot rotate through its /64. */
  readonly ipv6Subnet: number;
}

/** Password reset by email (SMTP_URL, MAIL_FROM, PASSWORD_RESET_URL): all three, or the feature is off. */
export interface PasswordResetConfig {
  /** smtp:// or smtps:// with credentials if the server needs them: a secret, never logged. */
  readonly smtpUrl: string;
  /** The From of the mail: an address, or `Name <address>`. */
  readonly mailFrom: string;
  /** The page that takes the token: the mail links to it with `?token=...` added. */
  readonly resetUrl: string;
}

export interface Config {
  readonly port: number;
  readonly host: string;
  /** How many serving processes (node:cluster workers) share `port`; 1 serves in the one process. */
  readonly webConcurrency: number;
  /** Undefined: GET /metrics on `port`. A number: only on HOST:metricsPort, a listener of its own. */
  readonly metricsPort: number | undefined;
  readonly issuer: string;
  readonly audience: string;
  /** Unset: the embedded PGlite database in `dataDir`. */
  readonly databaseUrl: string | undefined;
  /** At start-up, how long (seconds) `serve` and `migrate` retry a PostgreSQL that does not answer yet. */
  readonly databaseConnectTimeout: number;
  readonly dataDir: string;
  /** REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES; undefined: rate limits per process. */
  readonly redis: RedisTarget | undefined;
  /** The key-encryption-key ring; the first encrypts, all decrypt. Undefined: generated into `dataDir` (embedded only). */
  readonly keyEncryptionKeys: readonly Buffer[] | undefined;
  /** Lifetimes in seconds. */
  readonly accessTokenTtl: number;
  readonly refreshTokenIdleTtl: number;
  readonly refreshTokenAbsoluteTtl: number;
  readonly refreshReuseGrace: number;
  readonly jwksMaxAge: number;
  /** How often each replica re-reads the key table: the bound on how long a key change takes to reach it. */
  readonly keyReloadInterval: number;
  /** Rotate the signing key automatically this long after it became active; undefined: only by hand. */
  readonly keyRotationInterval: number | undefined;
  readonly trustProxy: TrustProxy;
  readonly argon2: Argon2Params;
  /** At most this many Argon2 operations at once; further ones wait in a queue of `argon2QueueLimit`. */
  readonly argon2MaxConcurrency: number;
  readonly argon2QueueLimit: number;
  readonly rateLimits: RateLimitConfig;
  readonly bootstrapAdmin: { readonly username: string; readonly password: string } | undefined;
  readonly corsOrigins: readonly string[];
  readonly registration: 'open' | 'closed';
  /** Undefined: no SMTP_URL, and POST /password-reset and /password-reset/confirm do not exist. */
  readonly passwordReset: PasswordResetConfig | undefined;
  readonly logLevel: LogLevel;
  /** After the stop signal: seconds the server goes on accepting, not ready, while load balancers catch up. */
  readonly shutdownDelay: number;
  /** Then: seconds in-flight requests get to finish. */
  readonly shutdownTimeout: number;
  /** Seconds audit events are kept; older ones go with the purge (src/refresh/housekeeping.ts). */
  readonly auditRetention: number;
}

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    // One problem, one line (what a log collector shows of a crash-looping pod); several, a list.
    super(
      problems.length === 1
        ? `Invalid configuration: ${problems[0]}`
        : `Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'ConfigError';
  }
}

/** The most requests a client may be allowed per window (CLIENT_RATE_LIMIT, a client's rate_limit). */
export const MAX_CLIENT_RATE_LIMIT = 1_000_000_000;

/** Ten years: longer lifetimes are mistakes, and dates computed from them would overflow. */
const MAX_DURATION_SECONDS = 3650 * 86_400;
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * OWASP Password Storage Cheat Sheet: the weakest acceptable Argon2id settings trade memory for
 * iterations (m=47104/t=1 ... m=7168/t=5); all of them keep memory x iterations at or above ~35,840 KiB.
 */
const ARGON2_MIN_MEMORY_KIB = 7168;
const ARGON2_MIN_MEMORY_TIMES_ITERATIONS = 35_840;

/**
 * Reads the environment once. Every bad variable is collected and reported together in one
 * ConfigError, so an operator fixes them all in one go (immich does the same).
 */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const read = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };

  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const text = read(name);
    if (text === undefined) return fallback;
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max} (got "${text}")`);
      return fallback;
    }
    return value;
  };

  const duration = (name: string, fallback: string, minSeconds: number, maxSeconds = MAX_DURATION_SECONDS): number => {
    const text = read(name) ?? fallback;
    const seconds = parseDuration(text);
    if (seconds === undefined || seconds < minSeconds || seconds > maxSeconds) {
      const max = maxSeconds === MAX_DURATION_SECONDS ? '3650d' : `${maxSeconds}s`;
      problems.push(`${name} must be a duration such as 15m, 14d or 10s, from ${minSeconds}s to ${max} (got "${text}")`);
      return parseDuration(fallback) ?? 0;
    }
    return seconds;
  };

  const port = integer('PORT', 3000, 0, 65535);
  const host = read('HOST') ?? '0.0.0.0';
  const metricsPort = read('METRICS_PORT') === undefined ? undefined : integer('METRICS_PORT', 0, 0, 65535);
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port) {
    problems.push(`METRICS_PORT must differ from PORT (both are ${port})`);
  }

  const webConcurrency = integer('WEB_CONCURRENCY', 1, 1, 64);

  const issuer = read('ISSUER') ?? `http://localhost:${port}`;
  problems.push(...checkIssuer(issuer));
  const audience = read('AUDIENCE') ?? issuer;

  const databaseUrl = read('DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// connection string');
  }
  // A pod whose Secret failed to mount must not become an empty identity provider of its own.
  if (databaseUrl === undefined && read('NODE_ENV') === 'production') {
    problems.push('DATABASE_URL is required when NODE_ENV=production: the embedded database is for development only');
  } else if (webConcurrency > 1 && databaseUrl === undefined) {
    problems.push('WEB_CONCURRENCY above 1 needs DATABASE_URL: the embedded database belongs to one process');
  }
  const redis = parseRedisTarget(
    {
      REDIS_URL: read('REDIS_URL'),
      REDIS_SENTINELS: read('REDIS_SENTINELS'),
      REDIS_SENTINEL_MASTER: read('REDIS_SENTINEL_MASTER'),
      REDIS_CLUSTER_NODES: read('REDIS_CLUSTER_NODES'),
      REDIS_USERNAME: read('REDIS_USERNAME'),
      // Spaces in a password are kept.
      REDIS_PASSWORD: env['REDIS_PASSWORD'] || undefined,
      REDIS_SENTINEL_PASSWORD: env['REDIS_SENTINEL_PASSWORD'] || undefined,
    },
    problems,
  );

  let keyEncryptionKeys: Buffer[] | undefined;
  const kekText = read('KEY_ENCRYPTION_KEYS');
  if (kekText !== undefined) {
    keyEncryptionKeys = kekText.split(',').map((part) => Buffer.from(part.trim(), 'base64'));
    keyEncryptionKeys.forEach((key, index) => {
      if (key.length !== 32) {
        problems.push(
          `KEY_ENCRYPTION_KEYS entry ${index + 1} must be 32 bytes in base64 (openssl rand -base64 32), got ${key.length} bytes`,
        );
      }
    });
  } else if (databaseUrl !== undefined) {
    problems.push(
      'KEY_ENCRYPTION_KEYS is required when DATABASE_URL is set (generate one with: openssl rand -base64 32)',
    );
  }

  const argon2 = {
    memoryKib: integer('ARGON2_MEMORY_KIB', 19_456, ARGON2_MIN_MEMORY_KIB, 4_194_304),
    iterations: integer('ARGON2_ITERATIONS', 2, 1, 100),
    parallelism: integer('ARGON2_PARALLELISM', 1, 1, 64),
  };
  if (argon2.memoryKib * argon2.iterations < ARGON2_MIN_MEMORY_TIMES_ITERATIONS) {
    problems.push(
      `ARGON2_MEMORY_KIB x ARGON2_ITERATIONS must be at least ${ARGON2_MIN_MEMORY_TIMES_ITERATIONS} (OWASP minimum), got ${argon2.memoryKib} x ${argon2.iterations}`,
    );
  }

  const limitSetting = (prefix: string, limit: number, window: string, maxLimit = 1_000_000): LimitSetting => ({
    limit: integer(`${prefix}_LIMIT`, limit, 1, maxLimit),
    window: duration(`${prefix}_WINDOW`, window, 1),
  });
  // Off unless set: one gateway is one client for all its users (README, "Brute-force defence").
  const client = {
    limit: read('CLIENT_RATE_LIMIT') === undefined ? undefined : integer('CLIENT_RATE_LIMIT', 1, 1, MAX_CLIENT_RATE_LIMIT),
    window: duration('CLIENT_RATE_WINDOW', '1m', 1),
  };
  const rateLimits: RateLimitConfig = {
    prefix: read('RATE_LIMIT_PREFIX') ?? 'tessera:rl:',
    loginIp: limitSetting('LOGIN_IP', 60, '1m'),
    loginIpAccount: limitSetting('LOGIN_IP_ACCOUNT_FAILURE', 10, '15m'),
    loginAccount: limitSetting('LOGIN_ACCOUNT_FAILURE', 100, '1h', 100),
    clientAuthFailure: limitSetting('CLIENT_AUTH_FAILURE', 100, '1m'),
    client,
    // The admin layer once shared CLIENT_RATE_*: where those are set, they still bound it.
    admin: {
      limit: integer('ADMIN_RATE_LIMIT', client.limit ?? 6000, 1, MAX_CLIENT_RATE_LIMIT),
      window: read('ADMIN_RATE_WINDOW') === undefined ? client.window : duration('ADMIN_RATE_WINDOW', '1m', 1),
    },
    passwordResetAccount: limitSetting('PASSWORD_RESET_ACCOUNT', 5, '1h'),
    ipv6Subnet: integer('IPV6_SUBNET', 64, 32, 128),
  };
  if (redis?.topology === 'cluster' && hashTagOf(rateLimits.prefix) !== undefined) {
    problems.push(`RATE_LIMIT_PREFIX must not hold a hash tag ({...}) with REDIS_CLUSTER_NODES: every counter would land in one slot (got "${rateLimits.prefix}")`);
  }

  const bootstrapUsername = read('BOOTSTRAP_ADMIN_USERNAME');
  const bootstrapPassword = env['BOOTSTRAP_ADMIN_PASSWORD'] || undefined; // spaces in a password are kept
  if ((bootstrapUsername === undefined) !== (bootstrapPassword === undefined)) {
    problems.push('BOOTSTRAP_ADMIN_USERNAME and BOOTSTRAP_ADMIN_PASSWORD must be set together');
  }

  const corsOrigins = (read('CORS_ORIGINS') ?? '')
    .split(',')
    .map((origin) => origin.trim())
    .filter((origin) => origin !== '');
  for (const origin of corsOrigins) {
    if (origin === '*' || !isOrigin(origin)) {
      problems.push(`CORS_ORIGINS entries must be origins such as https://app.example.com (got "${origin}")`);
    }
  }

  const registration = read('REGISTRATION') ?? 'closed';
  if (registration !== 'open' && registration !== 'closed') {
    problems.push(`REGISTRATION must be "open" or "closed" (got "${registration}")`);
  }

  const passwordReset = readPasswordReset(
    { SMTP_URL: read('SMTP_URL'), MAIL_FROM: read('MAIL_FROM'), PASSWORD_RESET_URL: read('PASSWORD_RESET_URL') },
    problems,
  );

  const logLevel = (read('LOG_LEVEL') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }

  const config: Config = {
    port,
    host,
    webConcurrency,
    metricsPort,
    issuer,
    audience,
    databaseUrl,
    databaseConnectTimeout: duration('DATABASE_CONNECT_TIMEOUT', '30s', 0),
    dataDir: read('DATA_DIR') ?? './.tessera',
    redis,
    keyEncryptionKeys,
    accessTokenTtl: duration('ACCESS_TOKEN_TTL', '15m', 30),
    refreshTokenIdleTtl: duration('REFRESH_TOKEN_IDLE_TTL', '14d', 60),
    refreshTokenAbsoluteTtl: duration('REFRESH_TOKEN_ABSOLUTE_TTL', '90d', 60),
    // A retry window, not a second lifetime: longer would let a stolen parent token go unnoticed.
    refreshReuseGrace: duration('REFRESH_REUSE_GRACE', '10s', 0, 60),
    jwksMaxAge: duration('JWKS_MAX_AGE', '5m', 0, 86_400),
    keyReloadInterval: duration('KEY_RELOAD_INTERVAL', '30s', 1, 300),
    keyRotationInterval: read('KEY_ROTATION_INTERVAL') === undefined ? undefined : duration('KEY_ROTATION_INTERVAL', '90d', 3600),
    trustProxy: parseTrustProxy(read('TRUST_PROXY'), problems),
    argon2,
    // libuv's thread pool runs Argon2, and also DNS look-ups, file I/O and key generation: by
    // default Argon2 may take all of it but one thread.
    argon2MaxConcurrency: integer('ARGON2_MAX_CONCURRENCY', Math.max(1, integer('UV_THREADPOOL_SIZE', 4, 1, 1024) - 1), 1, 1024),
    argon2QueueLimit: integer('ARGON2_QUEUE_LIMIT', 64, 0, 100_000),
    rateLimits,
    bootstrapAdmin:
      bootstrapUsername !== undefined && bootstrapPassword !== undefined
        ? { username: bootstrapUsername, password: bootstrapPassword }
        : undefined,
    corsOrigins,
    registration: registration === 'open' ? 'open' : 'closed',
    passwordReset,
    logLevel,
    shutdownDelay: duration('SHUTDOWN_DELAY', '5s', 0),
    shutdownTimeout: duration('SHUTDOWN_TIMEOUT', '10s', 0),
    // At least a day: a shorter log would be gone before anyone looked at an incident.
    auditRetention: duration('AUDIT_RETENTION', '90d', 86_400),
  };
  if (config.refreshTokenIdleTtl > config.refreshTokenAbsoluteTtl) {
    problems.push('REFRESH_TOKEN_IDLE_TTL must not be longer than REFRESH_TOKEN_ABSOLUTE_TTL');
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value) && !Buffer.isBuffer(value)) {
    for (const member of Object.values(value)) deepFreeze(member);
    Object.freeze(value);
  }
  return value;
}
