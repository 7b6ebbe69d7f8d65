import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { redisCall, redisClientCount, redisKeys, startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';
import { basicAuth, createTestClient, createTestUser, rateLimitRejections, startTestService, TEST_REDIS_URL, testEnv, type TestClient, type TestService } from './helpers/service.js';

let database: TestDatabase;
const services: TestService[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  for (const service of services) await service.close();
  await database?.drop();
});

let prefixCounter = 0;
/** Every instance in this file shares one database, so they share its key-encryption key. */
const KEK = randomBytes(32).toString('base64');
/** A service with its own Redis prefix (so its counters start at zero) and the given limits. */
async function serviceWith(limits: Env, options: { redisUrl?: string | undefined; prefix?: string } = {}): Promise<TestService> {
  const env = testEnv(database, {
    LOGIN_IP_LIMIT: '1000',
    LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '1000',
    LOGIN_ACCOUNT_FAILURE_LIMIT: '100',
    CLIENT_RATE_LIMIT: '1000',
    RATE_LIMIT_PREFIX: options.prefix ?? `tessera-test:${database.name}:${++prefixCounter}:`,
    KEY_ENCRYPTION_KEYS: KEK,
    ...limits,
  });
  const service = await startTestService(database, { env: { ...env, REDIS_URL: 'redisUrl' in options ? options.redisUrl : env['REDIS_URL'] } });
  services.push(service);
  return service;
}

const TOO_MANY = { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' };
const WRONG = { error: 'invalid_grant', error_description: 'the username or password is incorrect' };

function login(service: TestService, client: TestClient, username: string, password: string, from?: string) {
  const req = request(service.app).post('/token').type('form').set('Authorization', client.basic);
  if (from !== undefined) req.set('X-Forwarded-For', from);
  return req.send({ grant_type: 'password', username, password });
}

async function statuses(results: Promise<request.Response>[]): Promise<number[]> {
  return (await Promise.all(results)).map((res) => res.status);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the login layers', () => {
  it('login_ip: password-grant requests per IP trip at the limit with a full 429, then reset at the window', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '3', LOGIN_IP_WINDOW: '2s' });
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    for (let i = 0; i < 3; i++) expect((await login(service, client, user.username, user.password)).status).toBe(200);

    const limited = await login(service, client, user.username, user.password);
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect(limited.headers['cache-control']).toBe('no-store');
    expect(limited.headers['pragma']).toBe('no-cache');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(2);
    expect(limited.headers['ratelimit-policy']).toMatch(/^"login_ip"; q=3; w=2; pk=:[^:]+:/);
    expect(limited.headers['ratelimit']).toMatch(/^"login_ip"; r=0; t=\d+/);
    // The IETF draft's headers only, not the X-RateLimit-* ones before it.
    expect(Object.keys(limited.headers).filter((name) => name.startsWith('x-ratelimit'))).toEqual([]);
    expect(service.logs.entries('rate_limit_tripped')).toHaveLength(1);
    expect(service.logs.entries('rate_limit_tripped')[0]).toMatchObject({ layer: 'login_ip', level: 'warn' });

    await sleep(2100);
    expect((await login(service, client, user.username, user.password)).status).toBe(200);
  });

  it('login_ip_account: failures per IP and account trip, and a success clears them', async () => {
    const service = await serviceWith({ LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '3' });
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    const other = await createTestUser(service);
    for (let i = 0; i < 2; i++) expect((await login(service, client, user.username, 'wrong-password')).body).toEqual(WRONG);
    expect((await login(service, client, user.username, user.password)).status).toBe(200); // clears the count
    for (let i = 0; i < 3; i++) expect((await login(service, client, user.username, 'wrong-password')).body).toEqual(WRONG);

    const limited = await login(service, client, user.username, user.password);
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(890);
    // Account layers are not announced: their counts are nobody's business.
    expect(limited.headers['ratelimit-policy']).not.toContain('account');
    // Another account from the same IP is not affected; successes never counted.
    expect((await login(service, client, other.username, other.password)).status).toBe(200);
  });

  it('login_ip_account: a name no account can have is counted as a real one would be, whatever its case and outer spaces', async () => {
    // "no one" has a space: no account can have it, so it is counted under its case-folded, trimmed
    // form, as an account's name would be, and its variants cannot be told from a real account's.
    const service = await serviceWith({ LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '3' });
    const client = await createTestClient(service);
    for (const name of ['no one', 'NO ONE', ' No One ']) expect((await login(service, client, name, 'wrong-password')).body).toEqual(WRONG);
    const limited = await login(service, client, 'no one', 'wrong-password');
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
  });

  it('login_ip counts password-grant requests only: refresh and client-credentials requests from the same address are neither counted nor refused', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '2' });
    const client = await createTestClient(service, { grantTypes: ['password', 'refresh_token', 'client_credentials'] });
    const user = await createTestUser(service);
    const token = (body: Record<string, string>) => request(service.app).post('/token').type('form').set('Authorization', client.basic).send(body);
    const others = [];
    for (let i = 0; i < 3; i++) {
      others.push((await token({ grant_type: 'refresh_token', refresh_token: 'A'.repeat(43) })).status);
      others.push((await token({ grant_type: 'client_credentials' })).status);
    }
    expect(others).toEqual([400, 200, 400, 200, 400, 200]);
    expect(await statuses([0, 1, 2].map(() => login(service, client, user.username, user.password)))).toEqual([200, 200, 429]);
  });

  // login_account from many IPs, username spraying, username variants, IPv6 prefixes, spoofed
  // X-Forwarded-For, replicas and Redis outages: test/security/d-rate-limits.test.ts (D1-D6).

  // A limited request does no Argon2 work, and Argon2 runs in a bounded queue: test/security/c-credentials.test.ts (C4).

  it('a limited unknown account answers exactly like a limited known account', async () => {
    const service = await serviceWith({ LOGIN_ACCOUNT_FAILURE_LIMIT: '2', TRUST_PROXY: 'loopback' });
    const client = await createTestClient(service);
    const known = await createTestUser(service);
    const unknown = 'nobody-has-this-name';
    for (const username of [known.username, unknown]) {
      for (let i = 0; i < 2; i++) await login(service, client, username, 'wrong-password', '192.0.2.10');
    }
    // From two fresh addresses, so that every per-IP counter stands at the same value for both.
    const [a, b] = [await login(service, client, known.username, 'x', '192.0.2.11'), await login(service, client, unknown, 'x', '192.0.2.12')];
    const shape = (res: request.Response) => ({
      status: res.status,
      body: res.body,
      headers: Object.fromEntries(
        Object.entries(res.headers)
          .filter(([name]) => !['date', 'x-request-id'].includes(name))
          // The partition key is a hash of the (hashed) account name: different per account, never per existence.
          .map(([name, value]) => [name, String(value).replace(/pk=:[^:]*:/g, 'pk=:_:').replace(/t=\d+/g, 't=_')]),
      ),
    });
    expect(shape(a)).toEqual(shape(b));
    expect(a.status).toBe(429);
  });
});

describe('the account layer cannot be used to lock the owner out', () => {
  // The owner at a source that logged in before is exempt from the account layer: D3 in test/security/d-rate-limits.test.ts.

  it('a success clears the account failure count (NIST: consecutive failures)', async () => {
    const service = await serviceWith({ TRUST_PROXY: 'loopback', LOGIN_ACCOUNT_FAILURE_LIMIT: '3' });
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    for (let i = 0; i < 2; i++) await login(service, client, user.username, 'wrong-password', `203.0.113.${i + 1}`);
    expect((await login(service, client, user.username, user.password, '198.51.100.50')).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await login(service, client, user.username, 'wrong-password', `203.0.113.${i + 10}`)).status).toBe(400);
    expect((await login(service, client, user.username, 'wrong-password', '203.0.113.30')).status).toBe(400);
    expect((await login(service, client, user.username, 'wrong-password', '203.0.113.31')).status).toBe(429);
  });

  it('a right password remembers its source in Redis for 30 days, renewed by every login, and gives back every in-flight slot', async () => {
    const prefix = `tessera-test:${database.name}:${++prefixCounter}:`;
    const service = await serviceWith({}, { prefix });
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    const days30 = 30 * 86_400_000;
    const expectRemembered = async () => {
      const keys = await redisKeys(TEST_REDIS_URL, `${prefix}known_source:`);
      expect(keys).toHaveLength(1);
      expect(await redisCall(TEST_REDIS_URL, 'GET', keys[0]!)).toBe('1');
      const ttl = Number(await redisCall(TEST_REDIS_URL, 'PTTL', keys[0]!));
      expect(ttl).toBeGreaterThan(days30 - 60_000);
      expect(ttl).toBeLessThanOrEqual(days30);
      return keys[0]!;
    };

    // From a source not yet known: both account layers hold a slot while the password is verified.
    expect((await login(service, client, user.username, user.password)).status).toBe(200);
    const key = await expectRemembered();
    // Nearly forgotten, then a login from the same source: remembered for 30 days again, counted once.
    await redisCall(TEST_REDIS_URL, 'PEXPIRE', key, '60000');
    expect((await login(service, client, user.username, user.password)).status).toBe(200);
    await expectRemembered();
    expect(await redisKeys(TEST_REDIS_URL, `${prefix}login_ip_account_in_flight:`)).toEqual([]);
    expect(await redisKeys(TEST_REDIS_URL, `${prefix}login_account_in_flight:`)).toEqual([]);
  });

  it('no header tells anyone how many failures an account has', async () => {
    const service = await serviceWith({});
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    const res = await login(service, client, user.username, 'wrong-password');
    expect(res.headers['ratelimit']).toMatch(/^"login_ip"; r=\d+; t=\d+$/);
    expect(res.headers['ratelimit-policy']).toMatch(/^"login_ip"; q=\d+; w=\d+; pk=:[^:]+:$/);
  });
});

describe('the client layer', () => {
  const revoke = (service: TestService, c: TestClient, from: string) =>
    request(service.app).post('/revoke').type('form').set('X-Forwarded-For', from).set('Authorization', c.basic).send({ token: 'A'.repeat(43) });

  it('refresh, revoke and client-credentials requests are counted per authenticated client, from wherever they come; logins are not', async () => {
    const service = await serviceWith({ CLIENT_RATE_LIMIT: '3', TRUST_PROXY: 'loopback' });
    const client = await createTestClient(service, { grantTypes: ['password', 'refresh_token', 'client_credentials'] });
    const other = await createTestClient(service);
    const user = await createTestUser(service);
    const refresh = (c: TestClient, from: string) =>
      request(service.app).post('/refresh').set('X-Forwarded-For', from).set('Authorization', c.basic).send({ refresh_token: 'A'.repeat(43) });
    // A login is the login layers' to count, not the client's.
    expect((await login(service, client, user.username, user.password, '203.0.113.1')).status).toBe(200);
    expect(await statuses([revoke(service, client, '203.0.113.2'), refresh(client, '203.0.113.3'), revoke(service, client, '203.0.113.4')])).toEqual([200, 400, 200]);
    const limited = await refresh(client, '203.0.113.5');
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect(limited.headers['ratelimit-policy']).toMatch(/^"client"; q=3; w=60; pk=:[^:]+:$/);
    const cc = await request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'client_credentials' });
    expect(cc.status).toBe(429);
    expect(service.logs.entries('rate_limit_tripped')).toEqual([expect.objectContaining({ layer: 'client', client_id: client.id })]);
    // Another client, from the same addresses, has a budget of its own.
    expect((await revoke(service, other, '203.0.113.5')).status).toBe(200);
  });

  it('someone who knows a client id but not its secret cannot spend that client budget', async () => {
    const service = await serviceWith({ CLIENT_RATE_LIMIT: '2', TRUST_PROXY: 'loopback' });
    const gateway = await createTestClient(service);
    const impostor = { ...gateway, basic: `Basic ${Buffer.from(`${gateway.id}:not-the-secret`).toString('base64')}` };
    expect(await statuses([1, 2, 3, 4].map((i) => revoke(service, impostor, `198.51.100.${i}`)))).toEqual([401, 401, 401, 401]);
    expect(await statuses([revoke(service, gateway, '203.0.113.9'), revoke(service, gateway, '192.0.2.9')])).toEqual([200, 200]);
    expect((await revoke(service, gateway, '203.0.113.9')).status).toBe(429);
  });

  it('client_auth counts failed client authentications only; a burst of them is audited once, and the source is then refused whatever it sends', async () => {
    const service = await serviceWith({ CLIENT_AUTH_FAILURE_LIMIT: '2', TRUST_PROXY: 'loopback' });
    const gateway = await createTestClient(service);
    const from = '203.0.113.40';
    // Two methods at once is a bad request, not a failed authentication: never counted, however many.
    const twoMethods = () =>
      request(service.app).post('/revoke').type('form').set('X-Forwarded-For', from).set('Authorization', gateway.basic).send({ token: 'x', client_id: gateway.id, client_secret: gateway.secret! });
    const bad = await Promise.all([0, 1, 2, 3].map(twoMethods));
    for (const res of bad) expect(res.body).toEqual({ error: 'invalid_request', error_description: 'use only one client authentication method' });
    expect((await revoke(service, gateway, from)).status).toBe(200);
    // Failures arriving at once may all pass the check before any is counted: the trip is logged once however far past the limit they go.
    const impostor = { ...gateway, basic: basicAuth(gateway.id, 'not-the-secret') };
    const burst = await statuses(Array.from({ length: 20 }, () => revoke(service, impostor, from)));
    expect(burst.filter((status) => status !== 401 && status !== 429)).toEqual([]);
    expect(burst.filter((status) => status === 401).length).toBeGreaterThanOrEqual(2);
    expect(service.logs.entries('rate_limit_tripped')).toEqual([expect.objectContaining({ layer: 'client_auth', ip: from, level: 'warn' })]);
    const refused = await revoke(service, gateway, from);
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual(TOO_MANY);
    expect(await rateLimitRejections(service, 'client_auth')).toBe(burst.filter((status) => status === 429).length + 1);
    expect((await revoke(service, gateway, '203.0.113.41')).status).toBe(200);
    // A public client names itself with client_id alone, and is no failure.
    const spa = await createTestClient(service, { type: 'public' });
    const publicRevoke = await request(service.app).post('/revoke').type('form').set('X-Forwarded-For', '203.0.113.41').send({ token: 'x', client_id: spa.id });
    expect(publicRevoke.status).toBe(200);
    // The count is this deployment's (its RATE_LIMIT_PREFIX): another one on the same Redis does not share it.
    const neighbour = await serviceWith({ CLIENT_AUTH_FAILURE_LIMIT: '2', TRUST_PROXY: 'loopback' });
    expect((await revoke(neighbour, gateway, from)).status).toBe(200);
  });

  it('a client rate limit of its own replaces CLIENT_RATE_LIMIT; without either, a client is not limited', async () => {
    const service = await serviceWith({ CLIENT_RATE_LIMIT: undefined, TRUST_PROXY: 'loopback' });
    expect(service.config.rateLimits.client).toEqual({ limit: undefined, window: 60 });
    const unlimited = await createTestClient(service);
    const limitedClient = await createTestClient(service);
    await service.deps.db.updateTable('clients').set({ rate_limit: 2 }).where('id', '=', limitedClient.id).execute();
    const free = await revoke(service, unlimited, '203.0.113.20');
    expect(free.status).toBe(200);
    expect(free.headers['ratelimit']).toBeUndefined(); // no layer counted it, none is announced
    const sent = [];
    for (let i = 0; i < 3; i++) sent.push((await revoke(service, limitedClient, '203.0.113.21')).status);
    expect(sent).toEqual([200, 200, 429]);
  });
});

describe('the register layer', () => {
  it('self-registration is limited per IP on a counter of its own, announced as register', async () => {
    const service = await serviceWith({ REGISTRATION: 'open', LOGIN_IP_LIMIT: '1' });
    const register = () => request(service.app).post('/register').send({});
    expect((await register()).status).toBe(400);
    const limited = await register();
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect(limited.headers['ratelimit-policy']).toMatch(/^"register"; q=1; w=60; pk=:[^:]+:$/);
  });
});

describe('without Redis', () => {
  it('without REDIS_URL the same limits apply from memory, and start-up says they are per process', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '2' }, { redisUrl: undefined });
    const client = await createTestClient(service);
    expect(await statuses([0, 1, 2].map(() => login(service, client, 'memory', 'wrong-password')))).toEqual([400, 400, 429]);
    expect(service.logs.entries().some((e) => e['msg'] === 'no REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES: rate limits are kept per process, in memory')).toBe(true);
    expect((await request(service.app).get('/readyz')).body.checks.rate_limits).toBe('memory');
  });

  // Redis killed, hung or unreachable at start-up: D5 in test/security/d-rate-limits.test.ts.
});

describe('shutdown', () => {
  it('a stopped service closes its Redis connection: a Redis of its own counts no client of it after', async () => {
    const redis = await startRedisServer(); // its own, so that every connection it counts is the service's
    try {
      const service = await serviceWith({}, { redisUrl: redis.url });
      const client = await createTestClient(service);
      expect((await login(service, client, 'shutdown', 'wrong-password')).status).toBe(400); // the layers used Redis
      expect(await redisClientCount(redis.url)).toBeGreaterThan(0);
      services.splice(services.indexOf(service), 1);
      await service.close();
      await waitFor('the service to close its Redis connection', async () => (await redisClientCount(redis.url)) === 0, { intervalMs: 50 });
    } finally {
      await redis.stop();
    }
  });
});
