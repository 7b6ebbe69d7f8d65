import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type Env, loadConfig } from '../../src/config.js';
import type { LimitLayer } from '../../src/limits/rate-limits.js';
import { type RedisServer, redisKeys, startRedisServer } from '../helpers/redis-server.js';
import { waitFor } from '../helpers/wait.js';
import {
  countingHasher,
  createTestClient,
  createTestUser,
  rateLimitRejections,
  TEST_REDIS_URL,
  testEnv,
  type TestClient,
  type TestService,
  uniqueName,
  useServicesPerTest,
} from '../helpers/service.js';

/**
 * ATTACKS.md section D: getting round the brute-force layers (DESIGN.md, "Brute-force defence").
 * Every test starts its own service(s) on the file's database with a Redis prefix of its own, so
 * its counters start at zero, and sets the limits it needs low enough that a few requests meet them
 * (testEnv leaves the other layers out of reach).
 */

const services = useServicesPerTest('d');
const freshPrefix = services.freshPrefix;
const startService = services.start;
const serviceWith = services.forTest;

const TOO_MANY = { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' };
const WRONG = { error: 'invalid_grant', error_description: 'the username or password is incorrect' };

/** A password-grant request; `from` is what the nearest proxy appended to X-Forwarded-For. */
function login(service: TestService, client: TestClient, username: string, password: string, from?: string, headers: Record<string, string> = {}) {
  const req = request(service.app).post('/token').type('form').set('Authorization', client.basic).set(headers);
  if (from !== undefined) req.set('X-Forwarded-For', from);
  return req.send({ grant_type: 'password', username, password });
}

function revoke(service: TestService, client: TestClient, from?: string) {
  const req = request(service.app).post('/revoke').type('form').set('Authorization', client.basic);
  if (from !== undefined) req.set('X-Forwarded-For', from);
  return req.send({ token: 'A'.repeat(43) });
}

/** `count` requests one after another, each sent once the previous one has been answered. */
async function inTurn(count: number, send: (i: number) => PromiseLike<request.Response>): Promise<request.Response[]> {
  const responses: request.Response[] = [];
  for (let i = 0; i < count; i++) responses.push(await send(i));
  return responses;
}

const statusesOf = (responses: request.Response[]) => responses.map((res) => res.status);

function tally(statuses: number[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

/** The audit events of the limits that refused, at most one per key and window. */
const trips = (service: TestService, layer?: LimitLayer) =>
  service.logs.entries('rate_limit_tripped').filter((entry) => layer === undefined || entry['layer'] === layer);

/** Every header some proxy or CDN uses for the client address; none is Tessera's to believe. */
const otherAddressHeaders = (ip: string) => ({
  'X-Real-IP': ip,
  Forwarded: `for=${ip}`,
  'True-Client-IP': ip,
  'CF-Connecting-IP': ip,
  'X-Client-IP': ip,
  'X-Cluster-Client-IP': ip,
  'Fastly-Client-IP': ip,
});

describe('D1 spoofed client addresses', () => {
  it('D1 a rotating spoofed X-Forwarded-For (and X-Real-IP, Forwarded, ...) is ignored without TRUST_PROXY', async () => {
    const service = await serviceWith({ LOGIN_IP_LIMIT: '3' });
    expect(service.config.trustProxy).toBe(false); // the default
    const client = await createTestClient(service);
    const sent = await inTurn(5, (i) => {
      const spoofed = `198.51.100.${i + 1}`;
      return login(service, client, uniqueName('spoof'), 'wrong-password', spoofed, otherAddressHeaders(spoofed));
    });
    expect(statusesOf(sent)).toEqual([400, 400, 400, 429, 429]);
    expect(sent[3]!.body).toEqual(TOO_MANY);
    // The limit was counted against the peer that really connected, never an address the client wrote.
    expect(trips(service)).toEqual([expect.objectContaining({ layer: 'login_ip', ip: expect.stringMatching(/^(::ffff:)?127\.0\.0\.1$/) })]);
  });

  it.each(['loopback', '1', '127.0.0.0/8'])(
    'D1 with TRUST_PROXY=%s only the hop the trusted proxy appended counts, never a forged left-most one',
    async (trustProxy) => {
      const service = await serviceWith({ LOGIN_IP_LIMIT: '3', TRUST_PROXY: trustProxy });
      const client = await createTestClient(service);
      // The header is honoured: five real clients behind the proxy, none of them limited.
      const distinct = await inTurn(5, (i) => login(service, client, uniqueName('proxied'), 'wrong-password', `198.51.100.${i + 1}`));
      expect(statusesOf(distinct)).toEqual([400, 400, 400, 400, 400]);
      // One client rotating forged hops in front of what the proxy appended (and every other header).
      const forged = await inTurn(5, (i) =>
        login(service, client, uniqueName('forger'), 'wrong-password', `10.9.9.${i}, 192.0.2.${i}, 203.0.113.50`, otherAddressHeaders(`10.8.8.${i}`)),
      );
      expect(statusesOf(forged)).toEqual([400, 400, 400, 429, 429]);
      expect(trips(service)).toEqual([expect.objectContaining({ layer: 'login_ip', ip: '203.0.113.50' })]);
    },
  );
});

describe('D2 username spraying from one IP', () => {
  it('D2 spraying many usernames from one IP is stopped by login_ip, before client authentication and Argon2', async () => {
    const hasher = countingHasher();
    const service = await serviceWith({ LOGIN_IP_LIMIT: '5' }, { passwords: hasher });
    const clients = [await createTestClient(service), await createTestClient(service)];
    const victims = [await createTestUser(service), await createTestUser(service), await createTestUser(service)];
    // Each name is tried once, through alternating clients: no account layer ever sees a second failure.
    const names = [...victims.map((victim) => victim.username), ...Array.from({ length: 5 }, () => uniqueName('nobody'))];
    const sprayed = await inTurn(names.length, (i) => login(service, clients[i % 2]!, names[i]!, 'Summer2026!'));
    expect(statusesOf(sprayed)).toEqual([400, 400, 400, 400, 400, 429, 429, 429]);
    expect(sprayed[4]!.body).toEqual(WRONG);
    expect(sprayed[5]!.body).toEqual(TOO_MANY);
    expect(sprayed[5]!.headers['ratelimit-policy']).toMatch(/^"login_ip"; q=5; w=60; pk=:[^:]+:$/);
    expect(hasher.verifies).toBe(5);

    // Now even a victim's right password, or an invented client, buys nothing from this IP.
    const right = await login(service, clients[0]!, victims[0]!.username, victims[0]!.password);
    expect(right.status).toBe(429);
    expect(right.body).toEqual(TOO_MANY);
    const invented = await request(service.app).post('/token').type('form').auth('invented-client', 'x').send({ grant_type: 'password', username: 'x', password: 'y' });
    expect(invented.status).toBe(429);
    expect(hasher.verifies).toBe(5);
    expect(trips(service)).toEqual([expect.objectContaining({ layer: 'login_ip' })]);
  });
});

describe('D3 one account from a thousand IPs', () => {
  it('D3 a thousand IPs guessing one account: at most 100 guesses reach Argon2, the rest and even the right password get 429, the owner at home still logs in', async () => {
    const hasher = countingHasher();
    const service = await serviceWith({ TRUST_PROXY: 'loopback' }, { passwords: hasher });
    expect(service.config.rateLimits.loginAccount).toEqual({ limit: 100, window: 3600 }); // the default: NIST SP 800-63B's ceiling
    const client = await createTestClient(service);
    const owner = await createTestUser(service);
    const home = '192.0.2.1';
    expect((await login(service, client, owner.username, owner.password, home)).status).toBe(200);
    const before = hasher.verifies;

    // Ten waves of a hundred concurrent guesses, each from an address of its own (one guess per IP).
    const statuses: number[] = [];
    for (let wave = 0; wave < 10; wave++) {
      const guesses = Array.from({ length: 100 }, (_, j) => {
        const i = wave * 100 + j;
        return login(service, client, owner.username, `guess-${i}`, `198.18.${i >> 8}.${i & 255}`);
      });
      statuses.push(...statusesOf(await Promise.all(guesses)));
    }
    // Every guess was either verified and failed, or refused unverified; at most 100 were verified.
    const failed = tally(statuses)[400] ?? 0;
    expect(tally(statuses)).toEqual({ 400: failed, 429: 1000 - failed });
    expect(failed).toBeLessThanOrEqual(100);
    expect(hasher.verifies - before).toBe(failed);

    // The guess that happens to be right, from yet another address, is refused unverified: no token.
    const lucky = await login(service, client, owner.username, owner.password, '198.51.100.99');
    expect(lucky.status).toBe(429);
    expect(lucky.body).toEqual(TOO_MANY);
    expect(hasher.verifies - before).toBe(failed);
    expect(new Set(trips(service).map((entry) => entry['layer']))).toEqual(new Set(['login_account']));

    // The designed exemption: a source that logged in to the account in the last 30 days is not locked out.
    const atHome = await login(service, client, owner.username, owner.password, home);
    expect(atHome.status).toBe(200);
    expect(atHome.body.access_token).toEqual(expect.any(String));
  }, 60_000);

  it('D3 no configuration lifts the account layer above 100 failures', () => {
    const refused = (() => {
      try {
        loadConfig(testEnv(services.database(), { LOGIN_ACCOUNT_FAILURE_LIMIT: '101' }));
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).problems).toEqual(['LOGIN_ACCOUNT_FAILURE_LIMIT must be a whole number from 1 to 100 (got "101")']);
  });
});

describe('D4 replicas share one counter', () => {
  type Send = (replica: TestService, client: TestClient, i: number) => request.Test;
  const LAYERS: { layer: LimitLayer; env: Env; allowed: number; send: Send }[] = [
    { layer: 'login_ip', env: { LOGIN_IP_LIMIT: '4' }, allowed: 400, send: (s, c) => login(s, c, uniqueName('spray'), 'wrong-password') },
    { layer: 'login_ip_account', env: { LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '4' }, allowed: 400, send: (s, c) => login(s, c, 'replicated', 'wrong-password') },
    {
      layer: 'login_account',
      env: { LOGIN_ACCOUNT_FAILURE_LIMIT: '4', TRUST_PROXY: 'loopback' },
      allowed: 400,
      send: (s, c, i) => login(s, c, 'replicated', 'wrong-password', `203.0.113.${i + 1}`),
    },
    { layer: 'client', env: { CLIENT_RATE_LIMIT: '4' }, allowed: 200, send: (s, c) => revoke(s, c) },
  ];

  it.each(LAYERS)('D4 two replicas on one database and one Redis share one $layer counter', async ({ layer, env, allowed, send }) => {
    const prefix = freshPrefix();
    const replicas = [await serviceWith(env, { prefix }), await serviceWith(env, { prefix })];
    const client = await createTestClient(replicas[0]!);
    // Alternating replicas: each sees three requests, under the limit of four on its own.
    const sent = await inTurn(6, (i) => send(replicas[i % 2]!, client, i));
    expect(statusesOf(sent)).toEqual([allowed, allowed, allowed, allowed, 429, 429]);
    expect(sent[4]!.body).toEqual(TOO_MANY);
    expect(await redisKeys(TEST_REDIS_URL, `${prefix}${layer}:`)).not.toEqual([]);
  });
});

describe('D5 Redis stopped or hung', () => {
  const readiness = async (service: TestService) => {
    const res = await request(service.app).get('/readyz');
    expect(res.status).toBe(200); // a limiter without Redis is still ready
    return (res.body as { checks: { rate_limits: string } }).checks.rate_limits;
  };
  const logged = (service: TestService, message: string) => service.logs.entries().filter((entry) => String(entry['msg']).startsWith(message));

  /** LOGIN_IP_LIMIT is 3: five quick logins from one IP, counted in this process's memory, never a 500. */
  async function expectLimitedInMemory(service: TestService, client: TestClient): Promise<void> {
    const timings: number[] = [];
    const sent = await inTurn(5, async () => {
      const started = performance.now();
      const res = await login(service, client, 'outage', 'wrong-password');
      timings.push(performance.now() - started);
      return res;
    });
    // Never more than the limit (a process that remembers the count may refuse sooner), then refused to the end.
    expect(statusesOf(sent).join()).toMatch(/^(400,){0,3}429(,429)*$/);
    expect(sent[4]!.body).toEqual(TOO_MANY);
    // No request waits on Redis for long (DESIGN.md: at most 250 ms, once per 5 s).
    expect(Math.max(...timings)).toBeLessThan(1000);
    expect(await readiness(service)).toBe('memory_fallback');
    expect(logged(service, 'redis is unreachable')).toHaveLength(1);
  }

  const OUTAGES: { outage: string; fail(redis: RedisServer): Promise<void> | void; recover(redis: RedisServer): Promise<void> | void }[] = [
    { outage: 'killed', fail: (redis) => redis.stop(), recover: (redis) => redis.start() },
    { outage: 'hung (SIGSTOP)', fail: (redis) => redis.freeze(), recover: (redis) => redis.thaw() },
  ];

  it.each(OUTAGES)('D5 Redis $outage mid-run: no hang, no 500, the limit holds from memory, and counting returns to Redis', async ({ fail, recover }) => {
    const redis = await startRedisServer(); // its own: the shared Redis is never stopped
    try {
      const service = await serviceWith({ LOGIN_IP_LIMIT: '3', REDIS_URL: redis.url });
      const client = await createTestClient(service);
      expect((await login(service, client, 'outage', 'wrong-password')).status).toBe(400);
      expect(await readiness(service)).toBe('redis');

      await fail(redis);
      await expectLimitedInMemory(service, client);

      await recover(redis);
      await waitFor('counting in Redis again', async () => (await readiness(service)) === 'redis', { timeoutMs: 10_000, intervalMs: 100 });
      const keys = await redisKeys(redis.url, service.config.rateLimits.prefix);
      expect((await login(service, client, uniqueName('after'), 'wrong-password')).status).toBe(400);
      expect((await redisKeys(redis.url, service.config.rateLimits.prefix)).length).toBeGreaterThan(keys.length);
      expect(logged(service, 'redis is back: rate limits are shared again')).toHaveLength(1);
    } finally {
      redis.thaw();
      await redis.stop();
    }
  }, 30_000);

  // A Redis command slower than 250 ms is enough to switch a process to memory: under a flood that
  // is the service's own event loop lagging, not Redis going away (D3 meets it with 100 concurrent
  // guesses). If memory then counts from zero, every such moment hands an attacked account a fresh budget.
  it('D5 while Redis does not answer, counting continues from the count the process last saw: no fresh budget for an attacked account', async () => {
    const redis = await startRedisServer();
    try {
      const hasher = countingHasher();
      const service = await serviceWith({ TRUST_PROXY: 'loopback', LOGIN_ACCOUNT_FAILURE_LIMIT: '3', REDIS_URL: redis.url }, { passwords: hasher });
      const client = await createTestClient(service);
      const guess = (i: number) => login(service, client, 'attacked', `guess-${i}`, `198.18.0.${i + 1}`);
      expect(statusesOf(await inTurn(4, guess))).toEqual([400, 400, 400, 429]);

      redis.freeze();
      const during = await inTurn(3, (i) => guess(10 + i));
      expect(statusesOf(during)).toEqual([429, 429, 429]);
      expect(hasher.verifies).toBe(3);
    } finally {
      redis.thaw();
      await redis.stop();
    }
  });

  it('D5 Redis unreachable at start-up: start-up waits at most 2 s, then the limit holds from memory', async () => {
    const started = performance.now();
    const service = await serviceWith({ LOGIN_IP_LIMIT: '3', REDIS_URL: 'redis://127.0.0.1:1' }); // nothing listens on port 1
    expect(performance.now() - started).toBeLessThan(5000);
    await expectLimitedInMemory(service, await createTestClient(service));
  });
});

describe('D6 username variants, Retry-After and IPv6 prefixes', () => {
  /** The same username as others type it: upper case, decomposed, full width, ß spelled out. */
  const variantsOf = (username: string) => [
    username.toUpperCase(),
    username.normalize('NFD'),
    [...username].map((char) => (char >= '!' && char <= '~' ? String.fromCodePoint(char.codePointAt(0)! + 0xfee0) : char)).join(''),
    username.replace('ß', 'ss'),
  ];

  it.each([
    { layer: 'login_ip_account' as const, env: { LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '4' }, from: () => '203.0.113.7' },
    { layer: 'login_account' as const, env: { LOGIN_ACCOUNT_FAILURE_LIMIT: '4' }, from: (i: number) => `203.0.113.${i + 10}` },
  ])('D6 case, width and Unicode-normalisation variants of a username share one $layer counter', async ({ layer, env, from }) => {
    const service = await serviceWith({ TRUST_PROXY: 'loopback', ...env });
    const client = await createTestClient(service);
    const typed = uniqueName('straße.josé.');
    const user = await createTestUser(service, { username: typed });
    const other = await createTestUser(service);
    const variants = variantsOf(typed);
    expect(new Set([typed, ...variants]).size).toBe(5);

    const failures = await inTurn(4, (i) => login(service, client, variants[i]!, 'wrong-password', from(i)));
    expect(failures.map((res) => res.body)).toEqual([WRONG, WRONG, WRONG, WRONG]);
    const limited = await login(service, client, typed, user.password, from(4));
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect(trips(service)).toEqual([expect.objectContaining({ layer })]);
    // The counter is the account's, not the source's or everyone's.
    expect((await login(service, client, other.username, other.password, from(5))).status).toBe(200);
  });

  describe('every 429 says when to come back', () => {
    let service: TestService;
    let client: TestClient;
    beforeAll(async () => {
      service = await startService({
        TRUST_PROXY: 'loopback',
        REGISTRATION: 'open',
        LOGIN_IP_LIMIT: '5',
        LOGIN_IP_WINDOW: '2m',
        LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '2',
        // Above login_ip_account's, so that row's two failures do not lock its account in this layer too.
        LOGIN_ACCOUNT_FAILURE_LIMIT: '3',
        CLIENT_RATE_LIMIT: '2',
        CLIENT_RATE_WINDOW: '3m',
      });
      client = await createTestClient(service);
    });
    afterAll(() => service?.close());

    // Each row comes from addresses of its own, so no row spends another's budget.
    const LAYERS: { layer: LimitLayer; limit: number; window: number; allowed: number; send: (i: number) => request.Test }[] = [
      { layer: 'login_ip', limit: 5, window: 120, allowed: 400, send: () => login(service, client, uniqueName('d6-'), 'wrong-password', '192.0.2.11') },
      { layer: 'login_ip_account', limit: 2, window: 900, allowed: 400, send: () => login(service, client, 'd6-ip-account', 'wrong-password', '192.0.2.12') },
      { layer: 'login_account', limit: 3, window: 3600, allowed: 400, send: (i) => login(service, client, 'd6-account', 'wrong-password', `192.0.2.${20 + i}`) },
      { layer: 'client', limit: 2, window: 180, allowed: 200, send: () => revoke(service, client, '192.0.2.13') },
      { layer: 'admin', limit: 2, window: 180, allowed: 401, send: () => request(service.app).get('/admin/users').set('X-Forwarded-For', '192.0.2.14') },
      {
        layer: 'password_change',
        limit: 5,
        window: 120,
        allowed: 401,
        send: () => request(service.app).post('/users/me/password').set('X-Forwarded-For', '192.0.2.15').send({ current_password: 'a-guess', new_password: 'another-one' }),
      },
      { layer: 'register', limit: 5, window: 120, allowed: 400, send: () => request(service.app).post('/register').set('X-Forwarded-For', '192.0.2.16').send({}) },
    ];

    it.each(LAYERS)('D6 $layer refusals carry Retry-After and no-store, RateLimit headers only for IP layers, and one audit event', async ({ layer, limit, window, allowed, send }) => {
      const sent = await inTurn(limit + 3, send);
      expect(statusesOf(sent)).toEqual([...Array<number>(limit).fill(allowed), 429, 429, 429]);
      const limited = sent[limit + 2]!;
      expect(limited.body).toEqual(TOO_MANY);
      expect(limited.headers['cache-control']).toBe('no-store');
      expect(limited.headers['retry-after']).toMatch(/^\d+$/);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(window - 5);
      expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(window);
      if (layer === 'login_account' || layer === 'login_ip_account') {
        // Only login_ip speaks: an account's failure count is nobody's business.
        expect(limited.headers['ratelimit-policy']).toMatch(/^"login_ip"; q=5; w=120; pk=:[^:]+:$/);
        expect(limited.headers['ratelimit']).toMatch(/^"login_ip"; r=\d+; t=\d+$/);
      } else {
        expect(limited.headers['ratelimit-policy']).toMatch(new RegExp(`^"${layer}"; q=${limit}; w=${window}; pk=:[^:]+:$`));
        expect(limited.headers['ratelimit']).toMatch(new RegExp(`^"${layer}"; r=0; t=\\d+$`));
      }
      // Once per key and window (a request layer's first refusal, a failure layer reaching its limit): refusals cannot flood the log.
      expect(trips(service, layer)).toHaveLength(1);
      // The metric counts every refusal.
      expect(await rateLimitRejections(service, layer)).toBe(3);
    });
  });

  it.each([
    {
      name: 'three addresses in one /64 (default)',
      env: {},
      shared: ['2001:db8:1:2::1', '2001:db8:1:2:ffff:2:3:4', '2001:db8:1:2:dead:beef:0:1'],
      apart: '2001:db8:1:3::1',
    },
    {
      name: 'three /64s in one /56 (IPV6_SUBNET=56)',
      env: { IPV6_SUBNET: '56' },
      shared: ['2001:db8:1:200::1', '2001:db8:1:2ff::1', '2001:db8:1:2a0:dead::1'],
      apart: '2001:db8:1:300::1',
    },
    {
      name: 'an IPv4 address and its mapped forms',
      env: {},
      shared: ['203.0.113.5', '::ffff:203.0.113.5', '::ffff:cb00:7105'],
      apart: '203.0.113.6',
    },
  ])('D6 $name share one login_ip counter; $apart does not', async ({ env, shared, apart }) => {
    const service = await serviceWith({ TRUST_PROXY: 'loopback', LOGIN_IP_LIMIT: '2', ...env });
    const client = await createTestClient(service);
    const rotating = await inTurn(3, (i) => login(service, client, uniqueName('v6-'), 'wrong-password', shared[i]));
    expect(statusesOf(rotating)).toEqual([400, 400, 429]);
    expect((await login(service, client, uniqueName('v6-'), 'wrong-password', apart)).status).toBe(400);
  });
});
