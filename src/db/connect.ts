import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import type { PoolUsage } from '../metrics.js';
import { checkChannel, type Listen, listenOnPostgres } from './notifications.js';
import type { Database } from './schema.js';

export type DatabaseKind = 'postgres' | 'embedded';

export interface DatabaseHandle {
  readonly db: Kysely<Database>;
  readonly kind: DatabaseKind;
  /** The pg pool's connections now (for the metrics); undefined on PGlite, which has no pool. */
  readonly poolUsage: (() => PoolUsage) | undefined;
  /** Notifications on a channel (src/db/notifications.ts), until close(). */
  readonly listen: Listen;
  close(): Promise<void>;
}

export interface PostgresOptions {
  /** Connections per process. */
  readonly poolSize?: number;
  /**
   * Migrations may wait for another replica's migrations (an advisory lock) and may run long:
   * their connection has no statement or query timeout.
   */
  readonly forMigrations?: boolean;
}

/**
 * PostgreSQL through a pg pool. Timeouts are short on purpose: every query of a token request is
 * a millisecond's work, so when the database is unreachable or stalled a request fails with 503
 * (src/http/errors.ts) within about two seconds instead of hanging, and the pool reconnects by
 * itself once the database is back.
 *
 * statement_timeout (PostgreSQL's, from when a statement starts there) is shorter than
 * query_timeout (the client's, from when the query is sent), so a statement that reached the
 * server and got stuck there is cancelled, and rolled back, before the client gives up on it.
 * No timeout can close the rest: query_timeout fails the request but leaves the query on its
 * connection, so a statement held up in the network runs when it arrives, after the 503, and an
 * answer can be lost after the commit. A refresh rotation is the one write whose late commit
 * would matter; src/refresh/rotation.ts makes it harmless (the parent's retry gets the successor
 * the late commit sealed) and visible (audit `refresh_outcome_unknown`).
 */
export function openPostgres(url: string, log: Logger, options: PostgresOptions = {}): DatabaseHandle {
  const timeouts = options.forMigrations
    ? {}
    : { statement_timeout: 2_000, query_timeout: 2_500, idle_in_transaction_session_timeout: 10_000 };
  const max = options.poolSize ?? 10;
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: 2_000,
    idleTimeoutMillis: 30_000,
    ...timeouts,
    application_name: options.forMigrations ? 'tessera-migrate' : 'tessera',
  });
  // A client whose server went away emits 'error': the pool forwards it for idle clients, but a
  // checked-out client (mid-transaction, between statements) has no listener, and an unhandled
  // 'error' would end the process. The statement that next uses it fails and becomes a 503.
  pool.on('error', (error) => log.warn({ err: error }, 'database connection lost'));
  pool.on('connect', (client) => {
    client.on('error', (error) => log.warn({ err: error }, 'database connection lost'));
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const poolUsage = () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max });
  const notifications = listenOnPostgres(url, log);
  const close = async () => {
    await notifications.close();
    await db.destroy();
  };
  return { db, kind: 'postgres', poolUsage, listen: notifications.listen, close };
}

/** Where the embedded PGlite cluster lives inside DATA_DIR. */
export function embeddedDatabasePath(dataDir: string): string {
  return join(dataDir, 'pgdata');
}

/**
 * The embedded PostgreSQL (PGlite, WebAssembly) in DATA_DIR. One process at a time may open it:
 * src/embedded/lock.ts guards that, and the CLI reaches a running server through its control socket.
 */
export async function openEmbedded(dataDir: string, log: Logger): Promise<DatabaseHandle> {
  // Loaded lazily: a production process on PostgreSQL never pays for the WebAssembly module.
  const [{ PGlite }, { PGliteDialect }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('kysely-pglite-dialect'),
  ]);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const pglite = await PGlite.create(embeddedDatabasePath(dataDir));
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
  // One process, one connection: a notification cannot be missed while the database is open.
  const listen: Listen = (channel, handlers) => {
    pglite.listen(checkChannel(channel), handlers.notification).then(handlers.listening, (error: unknown) => {
      log.warn({ err: error, channel }, 'could not listen for database notifications: cached values are not used');
    });
  };
  return { db, kind: 'embedded', poolUsage: undefined, listen, close: () => db.destroy() };
}
