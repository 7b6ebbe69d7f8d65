// Tessera as every bench mode runs it: `tessera serve` from dist/ with production defaults, and the
// users and clients the load needs, written directly into its database.
import { createAccount } from '../dist/src/auth/accounts.js';
import { registerClient } from '../dist/src/auth/client-registry.js';
import { createPasswordHasher } from '../dist/src/auth/passwords.js';
import { loadConfig } from '../dist/src/config.js';
import { openPostgres } from '../dist/src/db/connect.js';
import { createLogger } from '../dist/src/logger.js';
import { basic } from './harness.mjs';

export const USERS = 64;
export const PASSWORD = 'bench-password-7f3a';

/**
 * Production defaults, but: this run's database and Redis prefix, and limits that never reject.
 * `clientRateLimit: false` leaves the per-client limit at its default (off), as a deployment that
 * has not sized one runs; the source check of client authentication (a Redis read) stays.
 */
export function tesseraEnv({ port, databaseUrl, redisUrl, redisPrefix, keyEncryptionKey, processes, clientRateLimit = true }) {
  return {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    ISSUER: `http://127.0.0.1:${port}`,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    RATE_LIMIT_PREFIX: redisPrefix,
    KEY_ENCRYPTION_KEYS: keyEncryptionKey,
    LOGIN_IP_LIMIT: '1000000',
    LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '1000000',
    ...(clientRateLimit ? { CLIENT_RATE_LIMIT: '1000000' } : {}),
    ...(processes === undefined ? {} : { WEB_CONCURRENCY: String(processes) }),
    // OTEL_* variables set for the run reach the server, to measure what tracing costs (BENCHMARKS.md).
    ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('OTEL_'))),
  };
}

/** Users with production-strength hashes, a gateway client and a service client, written directly. */
export async function seedTessera(env) {
  const config = loadConfig(env);
  const handle = openPostgres(env.DATABASE_URL, createLogger('warn'), { poolSize: 4 });
  try {
    const hasher = createPasswordHasher(config.argon2, { maxConcurrent: 2, queueLimit: USERS });
    const now = new Date();
    const users = Array.from({ length: USERS }, (_, i) => `bench-user-${i}`);
    await Promise.all(users.map((username) => createAccount(handle.db, hasher, { username, password: PASSWORD, scopes: ['profile', 'orders:read'] }, now)));
    const gateway = await registerClient(handle.db, { id: 'bench-gateway', scopes: ['profile', 'orders:read'], grantTypes: ['password', 'refresh_token'] }, now);
    const service = await registerClient(handle.db, { id: 'bench-service', scopes: ['orders:read'], grantTypes: ['client_credentials'] }, now);
    return {
      users,
      gateway: basic('bench-gateway', gateway.generatedSecret),
      service: basic('bench-service', service.generatedSecret),
      argon2: config.argon2,
      argon2Concurrency: config.argon2MaxConcurrency,
    };
  } finally {
    await handle.close();
  }
}
