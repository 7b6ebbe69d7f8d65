import { readFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type Env, loadConfig } from '../src/config.js';
import { errorHandler, notFound } from '../src/http/errors.js';
import { httpMetrics } from '../src/http/metrics.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import { OAuthError } from '../src/oauth/errors.js';
import { listen } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { captureLogs } from './helpers/logs.js';
import { ageSigningKeys } from './helpers/keys.js';
import { createTestClient, createTestUser, startTestService, testEnv, type TestClient, type TestService } from './helpers/service.js';

let database: TestDatabase;
let service: TestService;
/** Every service in this file opens the signing key the first one created: one key-encryption key. */
const KEY_ENCRYPTION_KEYS = randomBytes(32).toString('base64');
/** Small, so that one source meets it; every other request comes from an address of its own. */
const LOGIN_IP_LIMIT = 3;

/** `name` gives a service its own Redis prefix: closing it then deletes only its own counters. */
const envWith = (name: string, extra: Env = {}) =>
  testEnv(database, {
    KEY_ENCRYPTION_KEYS,
    TRUST_PROXY: 'loopback',
    LOGIN_IP_LIMIT: String(LOGIN_IP_LIMIT),
    RATE_LIMIT_PREFIX: `tessera-test:${database.name}:${name}:`,
    ...extra,
  });

beforeAll(async () => {
  database = await createTestDatabase();
  service = await startTestService(database, { env: envWith('main') });
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

type Samples = Map<string, number>;

/** `name{a="1",b="2"}` with the labels sorted: the key of one series, whatever order they are printed in. */
function seriesKey(name: string, labels: Readonly<Record<string, string>> = {}): string {
  const pairs = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => `${key}="${value}"`);
  return pairs.length === 0 ? name : `${name}{${pairs.join(',')}}`;
}

/** The samples of a text exposition (Prometheus 0.0.4), by series. */
function parseExposition(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`not an exposition line: ${line}`);
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    samples.set(seriesKey(match[1]!, labels as Record<string, string>), Number(match[3]));
  }
  return samples;
}

async function scrape(app = service.app): Promise<{ text: string; samples: Samples }> {
  const res = await request(app).get('/metrics');
  expect(res.status).toBe(200);
  return { text: res.text, samples: parseExposition(res.text) };
}

/** How much each series of `name` moved between two scrapes (series that did not move are left out). */
function moved(before: Samples, after: Samples, name: string): Record<string, number> {
  const deltas: Record<string, number> = {};
  for (const [key, value] of after) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    const delta = value - (before.get(key) ?? 0);
    if (delta !== 0) deltas[key] = delta;
  }
  return deltas;
}

let address = 0;
/** A source address of its own for each request, so that only the test of the limit meets it. */
const freshIp = () => `198.51.100.${++address}`;

function token(client: TestClient, params: Record<string, string>, from = freshIp()) {
  return request(service.app).post('/token').type('form').set('Authorization', client.basic).set('X-Forwarded-For', from).send(params);
}

const SECOND = 1000;

describe('GET /metrics', () => {
  it('answers the Prometheus text format with every family Tessera documents, and process metrics', async () => {
    const res = await request(service.app).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const families = new Map([...res.text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(Object.fromEntries([...families].filter(([name]) => name!.startsWith('tessera_')))).toEqual({
      tessera_token_requests_total: 'counter',
      tessera_refresh_token_reuse_detections_total: 'counter',
      tessera_refresh_token_grace_replays_total: 'counter',
      tessera_refresh_token_late_replays_total: 'counter',
      tessera_audit_rows_dropped_total: 'counter',
      tessera_rate_limit_rejections_total: 'counter',
      tessera_rate_limit_backend: 'gauge',
      tessera_rate_limit_topology: 'gauge',
      tessera_argon2_duration_seconds: 'histogram',
      tessera_argon2_queue_depth: 'gauge',
      tessera_argon2_active: 'gauge',
      tessera_http_request_duration_seconds: 'histogram',
      tessera_db_pool_connections: 'gauge',
      tessera_db_pool_waiting: 'gauge',
      tessera_db_pool_max_connections: 'gauge',
      tessera_signing_key_age_seconds: 'gauge',
      tessera_client_auth_blocks_synced: 'gauge',
      tessera_build_info: 'gauge',
    });
    for (const name of ['process_cpu_seconds_total', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(families.has(name), name).toBe(true);
    }
  });

  it('names the version of Tessera and of Node.js in tessera_build_info, always 1', async () => {
    const { samples } = await scrape();
    const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    const builds = [...samples].filter(([key]) => key.startsWith('tessera_build_info'));
    expect(builds).toEqual([[seriesKey('tessera_build_info', { version, node_version: process.version }), 1]]);
  });

  it('reports state read at scrape time: the rate-limit backend, the pool, the Argon2 queue', async () => {
    const { samples } = await scrape();
    expect(samples.get(seriesKey('tessera_rate_limit_backend', { backend: 'redis' }))).toBe(1);
    expect(samples.get(seriesKey('tessera_rate_limit_backend', { backend: 'memory' }))).toBe(0);
    expect(samples.get(seriesKey('tessera_rate_limit_backend', { backend: 'memory_fallback' }))).toBe(0);
    expect(samples.get(seriesKey('tessera_rate_limit_topology', { topology: 'single' }))).toBe(1);
    expect(samples.get(seriesKey('tessera_rate_limit_topology', { topology: 'none' }))).toBe(0);
    expect(samples.get('tessera_db_pool_max_connections')).toBe(4); // the test helper's pool size
    const inUse = samples.get(seriesKey('tessera_db_pool_connections', { state: 'in_use' }))!;
    const idle = samples.get(seriesKey('tessera_db_pool_connections', { state: 'idle' }))!;
    expect(inUse + idle).toBeGreaterThan(0);
    expect(inUse + idle).toBeLessThanOrEqual(4);
    expect(samples.get('tessera_db_pool_waiting')).toBe(0);
    expect(samples.get('tessera_argon2_queue_depth')).toBe(0);
    expect(samples.get('tessera_argon2_active')).toBe(0);
  });

  it('reports the signing key age on the database clock, never the service clock', async () => {
    const age = async () => (await scrape()).samples.get('tessera_signing_key_age_seconds')!;
    const before = await age();
    // The service's clock (a replica minutes off) changes nothing...
    service.clock.advance(90 * SECOND);
    const skewed = await age();
    service.clock.advance(-90 * SECOND);
    expect(skewed - before).toBeGreaterThanOrEqual(0);
    expect(skewed - before).toBeLessThan(5);
    // ...the key getting older on the database's clock does, from the next reload on.
    await ageSigningKeys(service.deps.db, 90);
    await service.deps.keys.reload();
    const after = await age();
    expect(after - before).toBeGreaterThanOrEqual(90);
    expect(after - before).toBeLessThan(95);
  });

  it('answers 405 to other methods', async () => {
    const res = await request(service.app).post('/metrics');
    expect(res.status).toBe(405);
    expect(res.headers['allow']).toBe('GET, HEAD');
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'this endpoint accepts GET, HEAD only' });
  });
});

describe('after traffic', () => {
  it('moves the token, refresh, rate-limit, Argon2 and HTTP series by exactly what happened', async () => {
    const client = await createTestClient(service);
    const machine = await createTestClient(service, { grantTypes: ['client_credentials'] });
    const user = await createTestUser(service);
    const { samples: before } = await scrape();

    // A login, and a wrong password.
    const login = await token(client, { grant_type: 'password', username: user.username, password: user.password });
    expect(login.status).toBe(200);
    const failed = await token(client, { grant_type: 'password', username: user.username, password: 'not the password' });
    expect(failed.status).toBe(400);
    // A refresh; two retries of it inside the grace window (one through /refresh); one after it
    // (late); the successor used; the parent again: reuse. Two grace replays and one late one, so
    // that the two counters cannot be confused.
    const parent = login.body.refresh_token as string;
    expect((await token(client, { grant_type: 'refresh_token', refresh_token: parent })).status).toBe(200);
    service.clock.advance(1 * SECOND);
    const replay = await request(service.app)
      .post('/refresh')
      .set('Authorization', client.basic)
      .set('X-Forwarded-For', freshIp())
      .send({ refresh_token: parent });
    expect(replay.status).toBe(200);
    expect((await token(client, { grant_type: 'refresh_token', refresh_token: parent })).body.refresh_token).toBe(replay.body.refresh_token);
    service.clock.advance(30 * SECOND);
    expect((await token(client, { grant_type: 'refresh_token', refresh_token: parent })).status).toBe(200);
    expect((await token(client, { grant_type: 'refresh_token', refresh_token: replay.body.refresh_token })).status).toBe(200);
    const reuse = await token(client, { grant_type: 'refresh_token', refresh_token: parent });
    expect(reuse.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    // One source past login_ip: its requests lack a password (no Argon2 work), the last is refused.
    const limitedIp = freshIp();
    for (let i = 0; i < LOGIN_IP_LIMIT; i++) {
      expect((await token(client, { grant_type: 'password', username: user.username }, limitedIp)).status).toBe(400);
    }
    const limited = await token(client, { grant_type: 'password', username: user.username }, limitedIp);
    expect(limited.status).toBe(429);
    // A client-credentials grant, and a grant Tessera does not have.
    expect((await token(machine, { grant_type: 'client_credentials' })).status).toBe(200);
    expect((await token(machine, { grant_type: 'urn:example:unknown' })).status).toBe(400);

    const { samples: after } = await scrape();
    const requests = (grant: string, outcome: string) => seriesKey('tessera_token_requests_total', { grant, outcome });
    expect(moved(before, after, 'tessera_token_requests_total')).toEqual({
      [requests('password', 'success')]: 1,
      [requests('password', 'invalid_grant')]: 1,
      [requests('password', 'invalid_request')]: LOGIN_IP_LIMIT,
      [requests('password', 'rate_limited')]: 1,
      [requests('refresh_token', 'success')]: 5,
      [requests('refresh_token', 'invalid_grant')]: 1,
      [requests('client_credentials', 'success')]: 1,
      [requests('unknown', 'unsupported_grant_type')]: 1,
    });
    expect(moved(before, after, 'tessera_refresh_token_grace_replays_total')).toEqual({ tessera_refresh_token_grace_replays_total: 2 });
    expect(moved(before, after, 'tessera_refresh_token_late_replays_total')).toEqual({ tessera_refresh_token_late_replays_total: 1 });
    expect(moved(before, after, 'tessera_refresh_token_reuse_detections_total')).toEqual({
      tessera_refresh_token_reuse_detections_total: 1,
    });
    expect(moved(before, after, 'tessera_rate_limit_rejections_total')).toEqual({
      [seriesKey('tessera_rate_limit_rejections_total', { layer: 'login_ip' })]: 1,
    });
    // One verify per password checked (the login and the wrong password); no hash.
    expect(moved(before, after, 'tessera_argon2_duration_seconds_count')).toEqual({
      [seriesKey('tessera_argon2_duration_seconds_count', { operation: 'verify' })]: 2,
    });
    const http = (route: string, status: string, method = 'POST') =>
      seriesKey('tessera_http_request_duration_seconds_count', { method, route, status });
    expect(moved(before, after, 'tessera_http_request_duration_seconds_count')).toEqual({
      [http('/token', '200')]: 6,
      [http('/refresh', '200')]: 1,
      [http('/token', '400')]: 3 + LOGIN_IP_LIMIT,
      [http('/token', '429')]: 1,
      [http('/metrics', '200', 'GET')]: 1, // the scrape that took `before`
    });
  });

  it('labels requests by route pattern, never by a URL that carries a token or an id', async () => {
    const secret = randomBytes(32).toString('base64url');
    const id = randomUUID();
    expect((await request(service.app).get(`/users/${id}`)).status).toBe(404);
    expect((await request(service.app).get(`/token?refresh_token=${secret}`)).status).toBe(405);
    expect((await request(service.app).get(`/.well-known/${secret}`)).status).toBe(404);
    const { text, samples } = await scrape();
    expect(text).not.toContain(secret);
    expect(text).not.toContain(id);
    const routes = new Set(
      [...samples.keys()]
        .filter((key) => key.startsWith('tessera_http_request_duration_seconds_count{'))
        .map((key) => /route="([^"]*)"/.exec(key)![1]),
    );
    expect(routes).toContain('unmatched');
    expect(routes).toContain('/token');
    for (const route of routes) expect(route).toMatch(/^(unmatched|\/[a-z./_-]*)$/);
  });

  it('labels a route of a mounted router with its mount path, also when it answers with an error', async () => {
    // The admin API is such a router: an error leaving it must still be labelled /admin/users/:id.
    const metrics = createMetrics();
    const app = express();
    app.use(httpMetrics(metrics));
    const admin = express.Router();
    admin.get('/users/:id', (req, res) => {
      if (req.params['id'] === 'missing') throw new OAuthError('invalid_request', 'no such user', { status: 404 });
      res.json({ id: req.params['id'] });
    });
    app.use('/admin', admin);
    app.use(notFound);
    app.use(errorHandler(createLogger('silent', captureLogs())));

    expect((await request(app).get(`/admin/users/${randomUUID()}`)).status).toBe(200);
    expect((await request(app).get('/admin/users/missing')).status).toBe(404);
    expect((await request(app).get(`/admin/nothing/${randomUUID()}`)).status).toBe(404);
    const samples = parseExposition(await metrics.registry.metrics());
    expect(moved(new Map(), samples, 'tessera_http_request_duration_seconds_count')).toEqual({
      [seriesKey('tessera_http_request_duration_seconds_count', { method: 'GET', route: '/admin/users/:id', status: '200' })]: 1,
      [seriesKey('tessera_http_request_duration_seconds_count', { method: 'GET', route: '/admin/users/:id', status: '404' })]: 1,
      [seriesKey('tessera_http_request_duration_seconds_count', { method: 'GET', route: 'unmatched', status: '404' })]: 1,
    });
  });
});

describe('the rate-limit backend', () => {
  it('reports memory_fallback while Redis cannot be reached', async () => {
    // Port 1: nothing listens, so Redis never becomes ready and counting stays in memory.
    const unreachable = await startTestService(database, { env: envWith('fallback', { REDIS_URL: 'redis://127.0.0.1:1' }) });
    try {
      const { samples } = await scrape(unreachable.app);
      expect(samples.get(seriesKey('tessera_rate_limit_backend', { backend: 'memory_fallback' }))).toBe(1);
      expect(samples.get(seriesKey('tessera_rate_limit_backend', { backend: 'redis' }))).toBe(0);
      // Nor can client_auth answer from its copy of the blocks: it reads (here, memory) per request.
      expect(samples.get('tessera_client_auth_blocks_synced')).toBe(0);
    } finally {
      await unreachable.close();
    }
  });
});

describe('METRICS_PORT', () => {
  it('serves /metrics on a listener of its own, and not on the main port', async () => {
    const separate = await startTestService(database, { env: envWith('separate', { PORT: '0', HOST: '127.0.0.1', METRICS_PORT: '0' }) });
    const running = await listen(separate.deps, () => separate.close());
    try {
      expect(running.metricsUrl).toBeDefined();
      expect(running.metricsUrl).not.toBe(running.url);

      const scraped = await request(running.metricsUrl!).get('/metrics');
      expect(scraped.status).toBe(200);
      expect(scraped.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(scraped.text).toContain('# TYPE tessera_token_requests_total counter');

      const onMain = await request(running.url).get('/metrics');
      expect(onMain.status).toBe(404);
      expect(onMain.body).toEqual({ error: 'invalid_request', error_description: 'there is no such endpoint' });
      // The metrics listener serves nothing else.
      const elsewhere = await request(running.metricsUrl!).get('/healthz');
      expect(elsewhere.status).toBe(404);
      expect(elsewhere.body).toEqual({ error: 'invalid_request', error_description: 'there is no such endpoint' });
      expect((await request(running.url).get('/healthz')).status).toBe(200);
    } finally {
      await running.close();
    }
    expect(running.server.listening).toBe(false);
  });

  it('is validated like PORT, and must not be PORT', () => {
    const problems = (env: Env) => {
      try {
        loadConfig(env);
        return [];
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        return error.problems;
      }
    };
    expect(loadConfig({}).metricsPort).toBeUndefined();
    expect(loadConfig({ METRICS_PORT: '9464' }).metricsPort).toBe(9464);
    expect(problems({ METRICS_PORT: 'metrics' })).toEqual(['METRICS_PORT must be a whole number from 0 to 65535 (got "metrics")']);
    expect(problems({ METRICS_PORT: '70000' })).toEqual(['METRICS_PORT must be a whole number from 0 to 65535 (got "70000")']);
    expect(problems({ PORT: '8080', METRICS_PORT: '8080' })).toEqual(['METRICS_PORT must differ from PORT (both are 8080)']);
  });
});
