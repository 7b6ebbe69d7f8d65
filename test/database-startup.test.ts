import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { type DatabaseProxy, startProxyFor, throughProxy } from './helpers/database-proxy.js';
import { freePort, logLines, startTessera, stopAll, waitForOutput, waitUntilReady } from './helpers/process.js';
import { noteSecret } from './helpers/secrets.js';
import { createTestClient, createTestUser, fetchPasswordGrant, startTestService, type TestClient, testEnv } from './helpers/service.js';
import { waitFor } from './helpers/wait.js';

// Start-up waits for PostgreSQL (DESIGN.md, "Running in production"): in Kubernetes or compose the
// database often starts with Tessera. `serve` retries with backoff for DATABASE_CONNECT_TIMEOUT,
// logging JSON, and then gives up with one clear line; a database that comes up meanwhile is used.

const RETRY = 'database not reachable yet: retrying';

let database: TestDatabase;
let client: TestClient;
let user: { username: string; password: string };
let kek: string;
const proxies: DatabaseProxy[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  kek = randomBytes(32).toString('base64');
  const seeding = await startTestService(database, { env: testEnv(database, { KEY_ENCRYPTION_KEYS: kek }) });
  client = await createTestClient(seeding);
  user = await createTestUser(seeding);
  await seeding.close();
});
afterAll(async () => {
  await stopAll();
  for (const proxy of proxies) {
    proxy.restore();
    await proxy.close();
  }
  await database?.drop();
});

async function serveEnv(databaseUrl: string, extra: NodeJS.ProcessEnv = {}): Promise<{ env: NodeJS.ProcessEnv; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    PATH: process.env['PATH'],
    ...testEnv({ ...database, url: databaseUrl }, { KEY_ENCRYPTION_KEYS: kek, HOST: '127.0.0.1', PORT: String(port), ISSUER: base }),
    ...extra,
  };
  return { env, base };
}

describe('tessera serve, PostgreSQL unreachable at start', () => {
  it('retries with JSON log lines for DATABASE_CONNECT_TIMEOUT, never logging the password, then exits 1 with one clear line', { timeout: 60_000 }, async () => {
    const password = `pw-${randomBytes(12).toString('hex')}`;
    noteSecret('database password (database-startup test)', password);
    const nowhere = await freePort(); // nothing listens there
    const { env } = await serveEnv(`postgres://tessera:${password}@127.0.0.1:${nowhere}/tessera`, { DATABASE_CONNECT_TIMEOUT: '3s' });
    const started = performance.now();
    const server = startTessera(['serve'], env);
    const exit = await server.exited;
    const elapsed = performance.now() - started;
    await waitForOutput(server);

    expect(exit).toEqual({ code: 1, signal: null });
    expect(elapsed).toBeGreaterThanOrEqual(3_000);
    const target = `127.0.0.1:${nowhere}/tessera`;
    expect(server.stderr()).toBe(`fatal: PostgreSQL at ${target} did not answer within DATABASE_CONNECT_TIMEOUT (3s): ECONNREFUSED\n`);

    const lines = logLines(server.stdout());
    const retries = lines.filter((line) => line['msg'] === RETRY);
    // 0.25 s, 0.5 s, 1 s, then what is left of the 3 s: at least four waits.
    expect(retries.length).toBeGreaterThanOrEqual(4);
    retries.forEach((line, index) => {
      expect(line).toMatchObject({ level: 'warn', database: target, attempt: index + 1, reason: 'ECONNREFUSED', retry_in_ms: expect.any(Number) });
    });
    // Backoff: each wait at least as long as the one before, but for the last, cut to the deadline.
    const waits = retries.map((line) => line['retry_in_ms'] as number);
    expect(waits.slice(0, 3)).toEqual([250, 500, 1_000]);
    expect(lines.at(-1)).toMatchObject({
      level: 'error',
      msg: 'database not reachable within DATABASE_CONNECT_TIMEOUT: giving up',
      database: target,
      attempts: retries.length + 1,
    });
    expect(`${server.stdout()}${server.stderr()}`).not.toContain(password);
  });

  it('stops waiting, and exits 0, when it is asked to stop meanwhile', { timeout: 60_000 }, async () => {
    // Ten minutes: only the signal can end this wait within the test's timeout.
    const { env } = await serveEnv(`postgres://tessera@127.0.0.1:${await freePort()}/tessera`, { DATABASE_CONNECT_TIMEOUT: '10m' });
    const server = startTessera(['serve'], env);
    await waitFor('a retry', () => logLines(server.stdout()).some((line) => line['msg'] === RETRY));
    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    await waitForOutput(server);
    expect(logLines(server.stdout()).at(-1)).toMatchObject({ level: 'info', msg: 'stopped before the database answered' });
    expect(server.stderr()).toBe('');
  });

  it('serves once PostgreSQL starts answering within DATABASE_CONNECT_TIMEOUT', { timeout: 60_000 }, async () => {
    // The database "starts late": until restore(), the proxy resets every connection it is offered.
    const proxy = await startProxyFor(database.url);
    proxies.push(proxy);
    proxy.cut();
    const { env, base } = await serveEnv(throughProxy(database, proxy).url, { SHUTDOWN_DELAY: '0s' });
    const server = startTessera(['serve'], env);
    await waitFor('two retries', () => logLines(server.stdout()).filter((line) => line['msg'] === RETRY).length >= 2);
    proxy.restore();
    await waitUntilReady(server, base);

    const res = await fetchPasswordGrant(base, client, user);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ token_type: 'Bearer', expires_in: 900, access_token: expect.any(String) });
    const messages = logLines(server.stdout()).map((line) => line['msg']);
    expect(messages.indexOf('database reachable')).toBeGreaterThan(messages.lastIndexOf(RETRY));
    expect(messages.indexOf('tessera is serving')).toBeGreaterThan(messages.indexOf('database reachable'));

    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });
});
