import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { createTestDatabase, type TestDatabase } from './database.js';
import { startTestService, testEnv, type TestService } from './service.js';

/**
 * The database "goes down" without touching the shared PostgreSQL: the service reaches it through
 * a TCP proxy the test controls. `cut()` is a crash or a refused port: every open connection is
 * reset and every new one is reset on accept. `stall()` is a network partition: open connections
 * stop carrying bytes (nothing is lost, as with TCP) and new ones are accepted but never answered.
 * `restore()` ends either; stalled connections carry on where they stopped.
 */
export interface DatabaseProxy {
  readonly port: number;
  cut(): void;
  stall(): void;
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  readonly downstream: Socket;
  upstream?: Socket;
}

export async function startDatabaseProxy(target: { host: string; port: number }): Promise<DatabaseProxy> {
  const pairs = new Set<Pair>();
  let state: 'up' | 'cut' | 'stalled' = 'up';

  const forward = (pair: Pair) => {
    if (pair.upstream === undefined) {
      const upstream = connect(target.port, target.host);
      upstream.on('error', () => upstream.destroy()); // a reset is the point here, not a test failure
      upstream.on('close', () => pair.downstream.destroy());
      pair.downstream.on('close', () => upstream.destroy());
      pair.upstream = upstream;
    }
    pair.downstream.pipe(pair.upstream);
    pair.upstream.pipe(pair.downstream);
  };
  const hold = (pair: Pair) => {
    pair.downstream.unpipe();
    pair.downstream.pause();
    pair.upstream?.unpipe();
    pair.upstream?.pause();
  };

  const server: Server = createServer((downstream) => {
    downstream.on('error', () => downstream.destroy());
    if (state === 'cut') {
      downstream.resetAndDestroy();
      return;
    }
    const pair: Pair = { downstream };
    pairs.add(pair);
    downstream.on('close', () => pairs.delete(pair));
    if (state === 'up') forward(pair);
    else downstream.pause();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      state = 'cut';
      for (const pair of pairs) {
        pair.downstream.resetAndDestroy();
        pair.upstream?.resetAndDestroy();
      }
    },
    stall() {
      state = 'stalled';
      for (const pair of pairs) hold(pair);
    },
    restore() {
      state = 'up';
      for (const pair of pairs) if (!pair.downstream.destroyed) forward(pair);
    },
    close() {
      for (const pair of pairs) {
        pair.downstream.destroy();
        pair.upstream?.destroy();
      }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The same database reached through the proxy (the test's own pool still goes direct). */
export function throughProxy<T extends { url: string }>(database: T, proxy: DatabaseProxy): T {
  const url = new URL(database.url);
  url.host = `127.0.0.1:${proxy.port}`;
  return { ...database, url: url.toString() };
}

export async function startProxyFor(databaseUrl: string): Promise<DatabaseProxy> {
  const target = new URL(databaseUrl);
  return startDatabaseProxy({ host: target.hostname, port: Number(target.port || 5432) });
}

/**
 * The file-level set-up of an outage test: a fresh database and a service that reaches it only
 * through a proxy the test controls (the test's own pool, `database().db`, still goes straight to
 * PostgreSQL). Read the getters inside tests and hooks.
 */
export function useProxiedService(): { database(): TestDatabase; proxy(): DatabaseProxy; service(): TestService } {
  let database: TestDatabase | undefined;
  let proxy: DatabaseProxy | undefined;
  let service: TestService | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    proxy = await startProxyFor(database.url);
    const proxied = throughProxy(database, proxy);
    service = await startTestService(proxied, { env: testEnv(proxied) });
  });
  afterAll(async () => {
    proxy?.restore(); // so that a failed test does not leave the pool waiting on a stalled connection
    await service?.close();
    await proxy?.close();
    await database?.drop();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the proxied service has not started');
    return value;
  };
  return { database: () => started(database), proxy: () => started(proxy), service: () => started(service) };
}
