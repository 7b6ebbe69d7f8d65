import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { createTestClient, createTestUser, recordResponses, startTestService, TEST_REDIS_URL, testEnv, type TestClient, type TestService } from './helpers/service.js';

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

  it('login_account: failures on one account from many IPs trip the account layer (through a trusted proxy)', async () => {
    const service = await serviceWith({ TRUST_PROXY: 'loopback', LOGIN_ACCOUNT_FAILURE_LIMIT: '5' });
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    for (let i = 0; i < 5; i++) {
      expect((await login(service, client, user.username, 'wrong-password', `203.0.113.${i + 1}`)).body).toEqual(WRONG);
    }
    const limited = await login(service, client, user.username, user.password, '198.51.100.7');
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(3590);
    expect(limited.headers['ratelimit-policy']).not.toContain('account');
    // Case and Unicode variants are the same account (and the same counter).
    expect((await login(service, client, user.username.toUpperCase(), user.password, '198.51.100.8')).status).toBe(429);
  });

  it('username spraying from one IP is stopped by the IP layer', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '5' });
    const client = await createTestClient(service);
    const results = await statuses(Array.from({ length: 8 }, (_, i) => login(service, client, `victim${i}`, 'Summer2026!')));
    expect(results.filter((s) => s === 400)).toHaveLength(5);
    expect(results.filter((s) => s === 429)).toHaveLength(3);
  });

  it('a limited request does no Argon2 work', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '2' });
    let verifies = 0;
    const real = service.deps.passwords;
    const app = recordResponses(createApp({ ...service.deps, passwords: { ...real, verify: (h, p) => (verifies++, real.verify(h, p)) } }));
    const client = await createTestClient(service);
    const send = () => request(app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'password', username: 'nobody', password: 'whatever1' });
    expect((await send()).status).toBe(400);
    expect((await send()).status).toBe(400);
    expect(verifies).toBe(2);
    expect((await send()).status).toBe(429);
    expect((await send()).status).toBe(429);
    expect(verifies).toBe(2);
  });

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

  it('IPv6 clients are counted per /64', async () => {
    const service = await serviceWith({ TRUST_PROXY: 'loopback', LOGIN_IP_LIMIT: '2' });
    const client = await createTestClient(service);
    const from = (suffix: string) => login(service, client, 'someone', 'wrong-password', `2001:db8:1:2:${suffix}`);
    expect((await from('1:1:1:1')).status).toBe(400);
    expect((await from('ffff:2:3:4')).status).toBe(400);
    expect((await from('dead:beef:0:1')).status).toBe(429); // same /64, a third address
    expect((await login(service, client, 'someone', 'wrong-password', '2001:db8:1:3::1')).status).toBe(400); // next /64
  });
});

describe('the account layer cannot be used to lock the owner out', () => {
  it('100 guesses from elsewhere lock strangers out, not the owner at a source that logged in before', async () => {
    const service = await serviceWith({ TRUST_PROXY: 'loopback', LOGIN_ACCOUNT_FAILURE_LIMIT: '5' });
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    expect((await login(service, client, user.username, user.password, '192.0.2.1')).status).toBe(200); // the owner's usual place
    for (let i = 0; i < 5; i++) await login(service, client, user.username, 'wrong-password', `203.0.113.${100 + i}`);
    expect((await login(service, client, user.username, 'wrong-password', '203.0.113.200')).status).toBe(429); // a new source
    expect((await login(service, client, user.username, user.password, '198.51.100.1')).status).toBe(429); // even with the password
    expect((await login(service, client, user.username, user.password, '192.0.2.1')).status).toBe(200); // the owner, at home
  });

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

  it('no header tells anyone how many failures an account has', async () => {
    const service = await serviceWith({});
    const client = await createTestClient(service);
    const user = await createTestUser(service);
    const res = await login(service, client, user.username, 'wrong-password');
    expect(res.headers['ratelimit']).toMatch(/^"login_ip"; r=\d+; t=\d+$/);
    expect(res.headers['ratelimit-policy']).toMatch(/^"login_ip"; q=\d+; w=\d+; pk=:[^:]+:$/);
  });
});

describe('the real client address', () => {
  it('a spoofed X-Forwarded-For is ignored without a trusted proxy', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '3' });
    const client = await createTestClient(service);
    const results = await statuses(Array.from({ length: 5 }, (_, i) => login(service, client, 'spoofer', 'wrong-password', `10.0.0.${i + 1}`)));
    expect(results.filter((s) => s === 429)).toHaveLength(2);
  });

  it('X-Forwarded-For is honoured through a trusted proxy (the nearest untrusted hop counts)', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '3', TRUST_PROXY: 'loopback' });
    const client = await createTestClient(service);
    // Five different real clients: none is limited.
    const distinct = await statuses(Array.from({ length: 5 }, (_, i) => login(service, client, 'someone', 'wrong-password', `198.51.100.${i + 1}`)));
    expect(distinct).toEqual([400, 400, 400, 400, 400]);
    // A client that prepends forged hops is still counted by the hop the proxy saw.
    const forged = await statuses(Array.from({ length: 5 }, (_, i) => login(service, client, 'someone', 'wrong-password', `10.9.9.${i}, 203.0.113.50`)));
    expect(forged.filter((s) => s === 429)).toHaveLength(2);
  });
});

describe('shared by replicas', () => {
  it('two instances on one Redis enforce one limit', async () => {
    const prefix = `tessera-test:${database.name}:shared:`;
    const first = await serviceWith({ LOGIN_IP_LIMIT: '4' }, { prefix });
    const second = await serviceWith({ LOGIN_IP_LIMIT: '4' }, { prefix });
    const client = await createTestClient(first);
    const results: number[] = [];
    for (let i = 0; i < 6; i++) results.push((await login(i % 2 === 0 ? first : second, client, 'shared', 'wrong-password')).status);
    expect(results).toEqual([400, 400, 400, 400, 429, 429]);
    expect(await redisKeys(TEST_REDIS_URL, prefix)).not.toEqual([]);
  });
});

describe('the client layer', () => {
  it('refresh, revoke and client-credentials requests are limited per source, whatever client they name', async () => {
    const service = await serviceWith({ CLIENT_RATE_LIMIT: '3' });
    const client = await createTestClient(service);
    const other = await createTestClient(service);
    const revoke = (c: TestClient) => request(service.app).post('/revoke').type('form').set('Authorization', c.basic).send({ token: 'A'.repeat(43) });
    const refresh = (c: TestClient) => request(service.app).post('/refresh').set('Authorization', c.basic).send({ refresh_token: 'A'.repeat(43) });
    expect(await statuses([revoke(client), refresh(client), revoke(client)])).toEqual([200, 400, 200]);
    const limited = await refresh(client);
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect(limited.headers['ratelimit-policy']).toContain('"client"; q=3; w=60');
    // Another (or an invented) client id from the same source buys no fresh budget.
    expect((await revoke(other)).status).toBe(429);
    const invented = await request(service.app).post('/introspect').type('form').auth('invented-1', 'x').send({ token: 'x' });
    expect(invented.status).toBe(429);
    const cc = await request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'client_credentials' });
    expect(cc.status).toBe(429);
    // Naming the password grant in the body does not step around the client layer at /revoke.
    const sneaky = await request(service.app).post('/revoke').type('form').set('Authorization', client.basic).send({ token: 'A'.repeat(43), grant_type: 'password' });
    expect(sneaky.status).toBe(429);
  });

  it('someone who knows a client id cannot spend that client budget from elsewhere', async () => {
    const service = await serviceWith({ CLIENT_RATE_LIMIT: '2', TRUST_PROXY: 'loopback' });
    const gateway = await createTestClient(service);
    const revokeFrom = (ip: string) =>
      request(service.app).post('/revoke').type('form').set('X-Forwarded-For', ip).set('Authorization', gateway.basic).send({ token: 'A'.repeat(43) });
    expect(await statuses([revokeFrom('203.0.113.9'), revokeFrom('203.0.113.9'), revokeFrom('203.0.113.9')])).toEqual([200, 200, 429]);
    expect((await revokeFrom('198.51.100.20')).status).toBe(200);
  });
});

describe('without Redis and when Redis fails', () => {
  it('without REDIS_URL the same limits apply from memory, and start-up says they are per process', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '2' }, { redisUrl: undefined });
    const client = await createTestClient(service);
    expect(await statuses([0, 1, 2].map(() => login(service, client, 'memory', 'wrong-password')))).toEqual([400, 400, 429]);
    expect(service.logs.entries().some((e) => e['msg'] === 'no REDIS_URL: rate limits are kept per process, in memory')).toBe(true);
    expect((await request(service.app).get('/readyz')).body.checks.rate_limits).toBe('memory');
  });

  it('Redis stopped mid-test: no hang, no 500, limits continue in memory; back in Redis after it restarts', async () => {
    const redis = await startRedisServer();
    try {
      const service = await serviceWith({ LOGIN_IP_LIMIT: '3' }, { redisUrl: redis.url });
      const client = await createTestClient(service);
      expect((await login(service, client, 'outage', 'wrong-password')).status).toBe(400);
      expect((await request(service.app).get('/readyz')).body.checks.rate_limits).toBe('redis');

      await redis.stop();
      const during = await statuses(Array.from({ length: 5 }, () => login(service, client, 'outage', 'wrong-password')));
      expect(during.every((s) => s === 400 || s === 429)).toBe(true);
      expect(during.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2); // at most 3 per window, even in memory
      const ready = await request(service.app).get('/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body.checks.rate_limits).toBe('memory_fallback');
      const warnings = service.logs.entries().filter((e) => String(e['msg']).startsWith('redis is unreachable'));
      expect(warnings).toHaveLength(1);

      await redis.start();
      await waitFor(async () => (await request(service.app).get('/readyz')).body.checks.rate_limits === 'redis');
      expect((await login(service, client, 'after', 'wrong-password')).status).toBe(400);
      expect(await redisKeys(redis.url, service.config.rateLimits.prefix)).not.toEqual([]);
    } finally {
      await redis.stop();
    }
  }, 30_000);
});

describe('a hung Redis', () => {
  it('costs no request more than a short timeout, limits continue in memory, and Redis is used again once it answers', async () => {
    const redis = await startRedisServer();
    try {
      const service = await serviceWith({ LOGIN_IP_LIMIT: '3' }, { redisUrl: redis.url });
      const client = await createTestClient(service);
      expect((await login(service, client, 'hung', 'wrong-password')).status).toBe(400);
      redis.freeze();
      const during = await statuses(Array.from({ length: 5 }, () => login(service, client, 'hung', 'wrong-password')));
      expect(during.every((s) => s === 400 || s === 429)).toBe(true);
      expect(during.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
      expect(service.logs.entries().filter((e) => String(e['msg']).startsWith('redis is unreachable'))).toHaveLength(1);
      redis.thaw();
      // After the cooldown, the next command reaches Redis again and says so.
      await waitFor(async () => {
        await login(service, client, 'after-thaw', 'wrong-password');
        return service.logs.entries().some((e) => e['msg'] === 'redis is back: rate limits are shared again');
      });
      expect((await request(service.app).get('/readyz')).body.checks.rate_limits).toBe('redis');
    } finally {
      redis.thaw();
      await redis.stop();
    }
  }, 30_000);
});

describe('bounded Argon2 work', () => {
  it('200 concurrent wrong-password attempts: no 500, at most ARGON2_MAX_CONCURRENCY hashing at once, overflow answered 503', async () => {
    const service = await serviceWith({ ARGON2_MAX_CONCURRENCY: '2', ARGON2_QUEUE_LIMIT: '20' });
    const client = await createTestClient(service);
    // Four accounts, so that no account reaches its 100-failure limit and every attempt reaches Argon2.
    const users = await Promise.all([0, 1, 2, 3].map(() => createTestUser(service)));
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => login(service, client, users[i % 4]!.username, 'wrong-password')));
    const byStatus = new Map<number, number>();
    for (const res of responses) byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
    expect([...byStatus.keys()].sort()).toEqual([400, 503]);
    const busy = responses.find((res) => res.status === 503)!;
    expect(busy.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the service is busy; retry shortly' });
    expect(busy.headers['retry-after']).toBe('1');
    expect(service.deps.passwords.load.peak).toBeLessThanOrEqual(2);
    expect(service.deps.passwords.load.active).toBe(0);
    expect(service.deps.passwords.load.queued).toBe(0);
  });
});

async function redisKeys(url: string, prefix: string): Promise<string[]> {
  const redis = new Redis(url);
  redis.on('error', () => undefined);
  try {
    return await redis.keys(`${prefix}*`);
  } finally {
    redis.disconnect();
  }
}

/** A Redis server of the test's own, on a free loopback port, that the test can stop and start. */
async function startRedisServer() {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
  let child: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}`;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await waitFor(async () => {
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        return (await probe.ping()) === 'PONG';
      } catch {
        return false;
      } finally {
        probe.disconnect();
      }
    });
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (running && running.exitCode === null) {
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
    }
  };
  /** A hung Redis: the process stops answering but keeps its connections open. */
  const freeze = () => child?.kill('SIGSTOP');
  const thaw = () => child?.kill('SIGCONT');
  await start();
  return { url, start, stop, freeze, thaw };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(100);
  }
  throw new Error('timed out waiting');
}
