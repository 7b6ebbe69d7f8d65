import { chmod, mkdir } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { auditedChange, createAuditLog } from './audit/writer.js';
import { AccountError, createAccount } from './auth/accounts.js';
import { createClientLookup } from './auth/client-cache.js';
import { createPasswordHasher } from './auth/passwords.js';
import { hashAhead } from './auth/prehash.js';
import { normaliseUsername } from './auth/usernames.js';
import { type Clock, systemClock } from './clock.js';
import type { Config } from './config.js';
import { type DatabaseHandle, openEmbedded, openPostgres } from './db/connect.js';
import { type MigrationOutcome, migrateToLatest } from './db/migrate.js';
import { countUsers } from './db/users.js';
import type { Deps } from './deps.js';
import { createMailer } from './mail/mailer.js';
import { createDrainState } from './drain.js';
import { lockDataDir } from './embedded/lock.js';
import { createApp } from './http/app.js';
import { listenForMetrics } from './http/metrics.js';
import type { Kysely } from 'kysely';
import type { Database } from './db/schema.js';
import { listSigningKeys } from './db/signing-keys.js';
import { createKeyRing, embeddedKekPath, type KeyRing, loadOrCreateEmbeddedKek } from './keys/key-encryption.js';
import { createKeyStore, ensureSigningKey, signingKeyAgeSeconds } from './keys/key-store.js';
import { announceKeySettings, maintainSigningKeys } from './keys/lifecycle.js';
import { createRateLimits } from './limits/rate-limits.js';
import { createMetrics } from './metrics.js';
import { connectRedis } from './limits/redis.js';
import { purgeAuditEvents, purgeBrowserSessions, purgePasswordResetTokens, purgeRefreshFamilies } from './refresh/housekeeping.js';
import { SUCCESSOR_SEAL_PURPOSE } from './refresh/tokens.js';

/** How often each replica purges dead refresh families (batched, SKIP LOCKED: replicas do not collide). */
const PURGE_INTERVAL_MS = 15 * 60_000;

/**
 * The configured database: PostgreSQL with DATABASE_URL, else PGlite in DATA_DIR under the
 * data-directory lock (released by close()).
 */
export async function openConfiguredDatabase(config: Config, log: Logger): Promise<DatabaseHandle> {
  if (config.databaseUrl !== undefined) return openPostgres(config.databaseUrl, log);
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  await chmod(config.dataDir, 0o700); // it holds the key-encryption key: ours alone, even if it existed before
  const lock = await lockDataDir(config.dataDir);
  try {
    const handle = await openEmbedded(config.dataDir, log);
    return { ...handle, close: () => handle.close().finally(() => lock.release()) };
  } catch (error) {
    await lock.release();
    throw error;
  }
}

/** Pending migrations, on PostgreSQL through a connection of their own without request timeouts. */
export async function migrateDatabase(config: Config, handle: DatabaseHandle, log: Logger): Promise<MigrationOutcome> {
  if (handle.kind === 'embedded' || config.databaseUrl === undefined) return migrateToLatest(handle.db);
  const migration = openPostgres(config.databaseUrl, log, { poolSize: 1, forMigrations: true });
  try {
    return await migrateToLatest(migration.db);
  } finally {
    await migration.close();
  }
}

/**
 * KEY_ENCRYPTION_KEYS, or in embedded mode the key in DATA_DIR (made on first start). A missing
 * file next to a database that already holds sealed keys is a lost key, not a first start: say so
 * rather than make a new key that opens nothing.
 */
export async function loadKeyRing(config: Config, db: Kysely<Database>): Promise<KeyRing> {
  if (config.keyEncryptionKeys !== undefined) return createKeyRing(config.keyEncryptionKeys);
  const { key, created } = await loadOrCreateEmbeddedKek(config.dataDir);
  if (created && (await listSigningKeys(db)).length > 0) {
    throw new Error(
      `${embeddedKekPath(config.dataDir)} was missing, but the database holds signing keys sealed with it: restore the file from a backup`,
    );
  }
  return createKeyRing([key]);
}

/**
 * Everything a serving process needs, on an open database: pending migrations applied (under the
 * migration advisory lock; a newer release's are left alone, with a warning), a signing key present and loaded, the bootstrap admin created.
 */
export async function prepareDeps(config: Config, handle: DatabaseHandle, log: Logger, clock: Clock = systemClock): Promise<Deps> {
  const { applied, unknown } = await migrateDatabase(config, handle, log);
  if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied');
  // A rollback, or an old replica restarting during a rollout: a newer release's migrations only
  // added to the schema (migrations/README.md), so this one serves on it.
  if (unknown.length > 0) {
    log.warn({ migrations: unknown }, 'the database has migrations from a newer release that this one does not know: serving without them');
  }
  const ring = await loadKeyRing(config, handle.db);
  await ensureSigningKey(handle.db, ring);
  const keys = await createKeyStore(handle.db, ring);
  // Before it serves a JWKS: a key added from now on waits for this replica's cache lifetime too.
  await announceKeySettings(handle.db, config);
  const metrics = createMetrics();
  const passwords = createPasswordHasher(
    config.argon2,
    { maxConcurrent: config.argon2MaxConcurrency, queueLimit: config.argon2QueueLimit },
    metrics.argon2Completed,
  );
  void passwords.dummyHash(); // computed now, so the first unknown-user login costs what the others do
  await bootstrapAdmin({ config, db: handle.db, clock, log, passwords });
  // Last: nothing after it can fail and leave the Redis connection open.
  const redis = config.redis ? connectRedis(config.redis, log) : undefined;
  // Counting starts where it will go on: in Redis, unless it cannot be reached within 2 s.
  await redis?.ready(2_000);
  const audit = createAuditLog({ db: handle.db, log, clock, rowsDropped: metrics.auditRowsDropped });
  const limits = createRateLimits(config.rateLimits, redis, audit.record, metrics.rateLimitRejected);
  metrics.watch({
    rateLimitBackend: limits.backend,
    rateLimitTopology: limits.topology,
    argon2Load: () => passwords.load,
    databasePool: handle.poolUsage,
    signingKeyAgeSeconds: () => signingKeyAgeSeconds(keys.current()),
    clientAuthBlocksSynced: limits.clientAuthBlocksSynced,
  });
  if (config.redis === undefined) log.info('no REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES: rate limits are kept per process, in memory');
  const clients = createClientLookup(handle.db, handle.listen);
  const mailer = config.passwordReset === undefined ? undefined : createMailer(config.passwordReset, log);
  return { config, db: handle.db, clients, clock, log, keys, keyRing: ring, passwords, limits, successorKeys: ring.derive(SUCCESSOR_SEAL_PURPOSE), metrics, audit, drain: createDrainState(), mailer };
}

/** BOOTSTRAP_ADMIN_*: an admin (direct scope `admin`) on a database that has no user yet. */
async function bootstrapAdmin(deps: Pick<Deps, 'config' | 'db' | 'clock' | 'log' | 'passwords'>): Promise<void> {
  const admin = deps.config.bootstrapAdmin;
  if (admin === undefined || (await countUsers(deps.db)) > 0) return;
  try {
    const passwords = await hashAhead(deps.passwords, admin.password, normaliseUsername(admin.username));
    await auditedChange(
      deps,
      { actor: { type: 'system', id: 'bootstrap' } },
      (trx) => createAccount(trx, passwords, { ...admin, scopes: ['admin'] }, new Date(deps.clock.now())),
      (user) => ({ event: 'user_created', fields: { user_id: user.id, actor: 'bootstrap', scopes: ['admin'] } }),
    );
  } catch (error) {
    if (error instanceof AccountError && error.code === 'username_taken') return; // another replica won the race
    if (error instanceof AccountError) throw new Error(`BOOTSTRAP_ADMIN_*: ${error.message}`);
    throw error;
  }
}

/**
 * Every KEY_RELOAD_INTERVAL: the key lifecycle's pending changes (done by one replica at a time),
 * then a re-read of the key table, so that a change made anywhere (another replica, the CLI)
 * reaches this replica within one interval.
 */
export function startKeyMaintenance(deps: Deps): { stop(): void } {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    // The reload does not depend on the maintenance: a failure of one never stops the other.
    maintainSigningKeys({ ...deps, ring: deps.keyRing })
      .catch((error: unknown) => deps.log.warn({ err: error }, 'could not run the signing-key lifecycle'))
      .then(() => deps.keys.reload())
      .catch((error: unknown) => deps.log.error({ err: error }, 'could not reload signing keys: this replica is not ready until it can'))
      .finally(() => (running = false));
  }, deps.config.keyReloadInterval * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

export interface RunningServer {
  readonly server: Server;
  readonly url: string;
  /** Where /metrics is served when METRICS_PORT is set (else it is on `url`). */
  readonly metricsUrl: string | undefined;
  /**
   * The first step of a stop: /readyz answers 503 and every response asks its client to close the
   * connection, while the server goes on accepting and serving (for SHUTDOWN_DELAY, src/cli/run.ts).
   */
  drain(): void;
  /** Stops accepting, lets in-flight requests finish within the shutdown timeout, then closes (and drains first if not yet). */
  close(): Promise<void>;
}

/** Listens with timeouts that end slow-header and slow-body clients (ATTACKS.md E7). */
export async function listen(deps: Deps, onClose: () => Promise<void>): Promise<RunningServer> {
  // Node checks the timeouts below only every connectionsCheckingInterval (30 s by default), which
  // would let a slow-headers client hold a connection for up to 40 s: check every second.
  // Draining belongs to this listening server alone: another one on the same deps (a test's) serves on.
  const drainState = createDrainState();
  const server = createServer({ connectionsCheckingInterval: 1_000 }, createApp({ ...deps, drain: drainState }));
  // While draining, every response tells keep-alive clients (gateways' pools) to close the connection
  // (RFC 9112 §9.6), so that they open their next one to another replica, and a busy pooled
  // connection does not hold the shutdown open or get reset at its deadline.
  const inFlight = new Set<ServerResponse>();
  server.on('request', (_req, res: ServerResponse) => {
    if (drainState.draining) res.setHeader('Connection', 'close');
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.config.port, deps.config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const metrics = await listenForMetrics(deps).catch((error: unknown) => {
    server.close();
    throw error;
  });
  const reload = startKeyMaintenance(deps);
  const purge = setInterval(() => {
    purgeRefreshFamilies(deps)
      .then((deleted) => deleted > 0 && deps.log.info({ families_deleted: deleted }, 'purged dead refresh families'))
      .catch((error: unknown) => deps.log.warn({ err: error }, 'could not purge refresh families'));
    purgePasswordResetTokens(deps).catch((error: unknown) => deps.log.warn({ err: error }, 'could not purge password reset tokens'));
    purgeBrowserSessions(deps)
      .then((deleted) => deleted > 0 && deps.log.info({ browser_sessions_deleted: deleted }, 'purged dead browser sessions'))
      .catch((error: unknown) => deps.log.warn({ err: error }, 'could not purge browser sessions'));
    purgeAuditEvents(deps)
      .then((deleted) => deleted > 0 && deps.log.info({ audit_events_deleted: deleted }, 'purged audit events past AUDIT_RETENTION'))
      .catch((error: unknown) => deps.log.warn({ err: error }, 'could not purge audit events'));
  }, PURGE_INTERVAL_MS);
  purge.unref();

  const drain = () => {
    drainState.start();
    void deps.audit.flush(); // what is buffered is written now, not when the timer says
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
  };
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      reload.stop();
      clearInterval(purge);
      drain();
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, deps.config.shutdownTimeout * 1000).unref());
      await Promise.race([drained, deadline]);
      server.closeAllConnections();
      await metrics?.close();
      await deps.limits.close();
      // The last requests' audit rows, before the database closes.
      await deps.audit.close();
      await onClose();
    })());
  const host = deps.config.host === '0.0.0.0' || deps.config.host === '::' ? 'localhost' : deps.config.host;
  return { server, url: `http://${host}:${port}`, metricsUrl: metrics && `http://${host}:${metrics.port}`, drain, close };
}
