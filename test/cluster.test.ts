import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPackageVersion } from '../src/package-root.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { childPids, freePort, logLines, type Spawned, startTessera, stopAll, waitUntilReady } from './helpers/process.js';
import { createTestClient, createTestUser, startTestService, type TestClient, testEnv } from './helpers/service.js';
import { waitFor } from './helpers/wait.js';

// WEB_CONCURRENCY=2 on the real binary: workers share the port, /metrics sums them, a dead worker
// is replaced, SIGTERM stops them all, and workers that cannot start stop the whole process.

let database: TestDatabase;
let settings: NodeJS.ProcessEnv;
let client: TestClient;
let user: { username: string; password: string };
/** The cluster most tests share: none of them stops it, and each leaves both workers serving. */
let shared: Cluster;

interface Cluster {
  readonly server: Spawned;
  readonly base: string;
}

beforeAll(async () => {
  database = await createTestDatabase();
  settings = testEnv(database, { HOST: '127.0.0.1', WEB_CONCURRENCY: '2', KEY_ENCRYPTION_KEYS: randomBytes(32).toString('base64') });
  // The user and client are made in-process on the same database, then the binary serves them.
  const seeding = await startTestService(database, { env: settings });
  client = await createTestClient(seeding);
  user = await createTestUser(seeding);
  await seeding.close();
  shared = await startCluster();
});
afterAll(async () => {
  await stopAll();
  await database?.drop();
});

/** `tessera serve` with two workers on a port of its own, once both workers serve. */
async function startCluster(): Promise<Cluster> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = startTessera(['serve'], { PATH: process.env['PATH'], ...settings, PORT: String(port), ISSUER: base });
  await waitUntilReady(server, base);
  // Ready means one worker answers; the other may still be loading.
  await waitFor('both workers to serve', () => servingWorkers(server).size === 2);
  return { server, base };
}

/** The ids of the workers that have said they serve. */
function servingWorkers(server: Spawned): Set<unknown> {
  return new Set(logLines(server.stdout()).filter((line) => line['msg'] === 'tessera is serving').map((line) => line['worker']));
}

/** One request on a connection of its own, so that the primary hands each to the next worker. */
function send(
  { base }: Cluster,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, agent: false, headers: { connection: 'close', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const login = (cluster: Cluster) =>
  send(
    cluster,
    'POST',
    '/token',
    { 'content-type': 'application/x-www-form-urlencoded', authorization: client.basic },
    new URLSearchParams({ grant_type: 'password', username: user.username, password: user.password }).toString(),
  );

describe('WEB_CONCURRENCY=2', () => {
  it('serves from two worker processes sharing the port', async () => {
    const { server } = shared;
    expect(childPids(server.child.pid!)).toHaveLength(2);
    const logged = logLines(server.stdout()).length;
    for (let i = 0; i < 6; i += 1) {
      const res = await login(shared);
      expect(res.status).toBe(200);
    }
    const workers = new Set<unknown>();
    for (const line of logLines(server.stdout()).slice(logged)) if (line['msg'] === 'request completed' && line['worker'] !== undefined) workers.add(line['worker']);
    expect(workers.size).toBe(2);
  });

  it('/metrics on any worker counts the requests of every worker', async () => {
    const before = await successfulPasswordGrants(shared);
    for (let i = 0; i < 10; i += 1) expect((await login(shared)).status).toBe(200);
    // Each scrape lands on one worker or the other; each must see all ten logins.
    for (let i = 0; i < 4; i += 1) expect(await successfulPasswordGrants(shared)).toBe(before + 10);
  });

  it('/metrics reports tessera_build_info once, at 1, however many workers serve', async () => {
    const res = await send(shared, 'GET', '/metrics');
    expect(res.body.split('\n').filter((line) => line.startsWith('tessera_build_info{'))).toEqual([
      `tessera_build_info{version="${readPackageVersion()}",node_version="${process.version}"} 1`,
    ]);
  });

  it('replaces a worker that dies, and keeps serving meanwhile', async () => {
    const { server } = shared;
    const [victim, survivor] = childPids(server.child.pid!);
    const serving = servingWorkers(server);
    process.kill(victim!, 'SIGKILL');
    const patience = { timeoutMs: 30_000, intervalMs: 50 };
    await waitFor('a replacement worker', () => {
      const now = childPids(server.child.pid!);
      return now.length === 2 && !now.includes(victim!) && now.includes(survivor!);
    }, patience);
    expect(logLines(server.stdout()).some((line) => line['msg'] === 'a worker died: starting another')).toBe(true);
    // While the replacement loads, the survivor answers alone, /metrics included.
    expect((await login(shared)).status).toBe(200);
    expect(await successfulPasswordGrants(shared)).toBeGreaterThan(0);
    await waitFor('the replacement to serve', () => [...servingWorkers(server)].some((worker) => !serving.has(worker)), patience);
    expect((await login(shared)).status).toBe(200);
  });

  it('stops every worker on SIGTERM and exits 0', async () => {
    const { server } = await startCluster();
    const workers = childPids(server.child.pid!);
    expect(workers).toHaveLength(2);
    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
  });

  it('exits 1, without looping, when its workers cannot start', async () => {
    const unreachable = `postgres://postgres@127.0.0.1:${await freePort()}/nowhere`;
    // DATABASE_CONNECT_TIMEOUT=0s: one attempt each, then the worker gives up.
    const failing = startTessera(['serve'], {
      PATH: process.env['PATH'],
      ...settings,
      DATABASE_URL: unreachable,
      DATABASE_CONNECT_TIMEOUT: '0s',
      PORT: String(await freePort()),
    });
    expect((await failing.exited).code).toBe(1);
    expect(logLines(failing.stdout()).filter((line) => line['msg'] === 'a worker failed to start: stopping').length).toBeGreaterThan(0);
  });
});

async function successfulPasswordGrants(cluster: Cluster): Promise<number> {
  const res = await send(cluster, 'GET', '/metrics');
  expect(res.status).toBe(200);
  const line = res.body.split('\n').find((each) => each.startsWith('tessera_token_requests_total{grant="password",outcome="success"}'));
  return Number(line?.split(' ').at(-1));
}
