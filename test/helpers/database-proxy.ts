import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, onTestFinished } from 'vitest';
import { createTestDatabase, type TestDatabase } from './database.js';
import { startTestService, testEnv, type TestService } from './service.js';

/**
 * The database "goes down" without touching the shared PostgreSQL: the service reaches it through
 * a TCP proxy the test controls. `cut()` is a crash or a refused port: every open connection is
 * reset and every new one is reset on accept. `stall()` is a network partition: open connections
 * stop carrying bytes (nothing is lost, as with TCP) and new ones are accepted but never answered.
 * `faultOn(marker, fault)` strikes the one connection that next sends a query containing `marker`:
 * `lose-answer` lets that query reach PostgreSQL and run but holds back everything PostgreSQL
 * answers on that connection; `delay-query` holds the query itself (and both directions of that
 * connection) before it reaches PostgreSQL. `restore()` ends all of these; whatever was held
 * carries on where it stopped. `countSent(marker)` counts, from then on, the queries sent that
 * contain `marker` (node-postgres sends each query in one write, and one query at a time per connection).
 */
export interface DatabaseProxy {
  readonly port: number;
  cut(): void;
  stall(): void;
  faultOn(marker: string, fault: 'lose-answer' | 'delay-query'): void;
  countSent(marker: string): () => number;
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  readonly downstream: Socket;
  upstream?: Socket;
  /** Bytes held on their way to PostgreSQL, and on their way back, while that direction is held. */
  readonly toServer: Buffer[];
  readonly toClient: Buffer[];
  holdToServer: boolean;
  holdToClient: boolean;
  clientEnded: boolean;
  /** The end of the last chunk sent, so that a marker split across two chunks is still seen. */
  tail: Buffer;
}

export async function startDatabaseProxy(target: { host: string; port: number }): Promise<DatabaseProxy> {
  const pairs = new Set<Pair>();
  let state: 'up' | 'cut' | 'stalled' = 'up';
  let fault: { marker: Buffer; kind: 'lose-answer' | 'delay-query' } | undefined;
  const counters: { marker: Buffer; count: number }[] = [];

  const upstreamOf = (pair: Pair): Socket => {
    if (pair.upstream === undefined) {
      const upstream = connect(target.port, target.host);
      upstream.on('error', () => upstream.destroy()); // a reset is the point here, not a test failure
      upstream.on('close', () => pair.downstream.destroy());
      upstream.on('data', (chunk: Buffer) => (pair.holdToClient ? pair.toClient.push(chunk) : pair.downstream.write(chunk)));
      pair.downstream.on('close', () => upstream.destroy());
      pair.upstream = upstream;
    }
    return pair.upstream;
  };
  const fromClient = (pair: Pair, chunk: Buffer) => {
    for (const counter of counters) if (chunk.includes(counter.marker)) counter.count += 1;
    const seen = Buffer.concat([pair.tail, chunk]);
    pair.tail = seen.subarray(Math.max(0, seen.length - 256));
    if (fault !== undefined && !pair.holdToServer && seen.includes(fault.marker)) {
      pair.holdToClient = true;
      if (fault.kind === 'delay-query') pair.holdToServer = true;
      fault = undefined;
    }
    if (pair.holdToServer) pair.toServer.push(chunk);
    else upstreamOf(pair).write(chunk);
  };
  const release = (pair: Pair) => {
    if (pair.downstream.destroyed) return;
    pair.holdToServer = false;
    pair.holdToClient = false;
    if (pair.toServer.length > 0) upstreamOf(pair).write(Buffer.concat(pair.toServer.splice(0)));
    if (pair.clientEnded) pair.upstream?.end();
    if (pair.toClient.length > 0) pair.downstream.write(Buffer.concat(pair.toClient.splice(0)));
  };

  const server: Server = createServer((downstream) => {
    downstream.on('error', () => downstream.destroy());
    if (state === 'cut') {
      downstream.resetAndDestroy();
      return;
    }
    const stalled = state === 'stalled';
    const pair: Pair = { downstream, toServer: [], toClient: [], holdToServer: stalled, holdToClient: stalled, clientEnded: false, tail: Buffer.alloc(0) };
    pairs.add(pair);
    downstream.on('close', () => pairs.delete(pair));
    downstream.on('data', (chunk: Buffer) => fromClient(pair, chunk));
    downstream.on('end', () => {
      pair.clientEnded = true;
      if (!pair.holdToServer) pair.upstream ? pair.upstream.end() : downstream.destroy();
    });
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
      for (const pair of pairs) {
        pair.holdToServer = true;
        pair.holdToClient = true;
      }
    },
    faultOn(marker, kind) {
      fault = { marker: Buffer.from(marker, 'utf8'), kind };
    },
    countSent(marker) {
      const counter = { marker: Buffer.from(marker, 'utf8'), count: 0 };
      counters.push(counter);
      return () => counter.count;
    },
    restore() {
      state = 'up';
      fault = undefined;
      for (const pair of pairs) release(pair);
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

/** A proxy for the test that calls this: restored and closed when the test finishes, whatever its outcome. */
export async function proxyForThisTest(databaseUrl: string): Promise<DatabaseProxy> {
  const proxy = await startProxyFor(databaseUrl);
  onTestFinished(async () => {
    proxy.restore();
    await proxy.close();
  });
  return proxy;
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
