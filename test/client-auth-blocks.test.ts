import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCKS } from '../src/limits/blocked-sources.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { basicAuth, createTestClient, rateLimitRejections, startTestService, testEnv, type TestClient, type TestService } from './helpers/service.js';
import { waitFor } from './helpers/wait.js';

// Issue 17: a client authentication that succeeds costs no Redis command. Every replica keeps the
// client_auth blocks in memory, fed by Redis pub/sub and a read of the shared set whenever it
// (re)subscribes (src/limits/blocked-sources.ts); without a complete view it reads per request.
// All on a Redis of the file's own, so that every command it counts is these services'.

const LIMIT = 3; // CLIENT_AUTH_FAILURE_LIMIT
const TOO_MANY = { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' };

let database: TestDatabase;
let redis: RedisServer;
let stats: Redis; // the test's own connection, made once: its only commands afterwards are INFO
let client: TestClient;
const services: TestService[] = [];
const KEK = randomBytes(32).toString('base64');
const PREFIX = `tessera-test:blocks:${randomBytes(4).toString('hex')}:`;

/** A replica of the file's deployment, or with `prefix`, of another one on the same Redis (a set and channel of its own). */
async function replica(prefix = PREFIX): Promise<TestService> {
  const env = testEnv(database, {
    REDIS_URL: redis.url,
    RATE_LIMIT_PREFIX: prefix,
    KEY_ENCRYPTION_KEYS: KEK,
    TRUST_PROXY: 'loopback',
    CLIENT_AUTH_FAILURE_LIMIT: String(LIMIT),
    CLIENT_RATE_LIMIT: undefined, // the default: no per-client layer, so client_auth is the only one a grant meets
  });
  const service = await startTestService(database, { env });
  services.push(service);
  return service;
}

beforeAll(async () => {
  database = await createTestDatabase();
  redis = await startRedisServer();
  stats = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  stats.on('error', () => undefined);
  await stats.ping();
  client = await createTestClient(await replica(), { grantTypes: ['client_credentials'], scopes: ['orders:read'] });
});
afterAll(async () => {
  for (const service of services) await service.close();
  stats?.disconnect();
  await redis?.stop();
  await database?.drop();
});

/** The gauge: 1 while the service answers client_auth from its synced copy of the blocks. */
async function synced(service: TestService): Promise<number | undefined> {
  const text = (await request(service.app).get('/metrics')).text;
  const value = /^tessera_client_auth_blocks_synced (\d+)$/m.exec(text)?.[1];
  return value === undefined ? undefined : Number(value);
}
/** Every replica given, or (none given) every replica of the file: then no other one is still reading the set while a test counts commands. */
const untilSynced = (...replicas: TestService[]) =>
  Promise.all((replicas.length > 0 ? replicas : services).map((service) => waitFor('the replica to read the blocks and subscribe', async () => (await synced(service)) === 1, { timeoutMs: 20_000 })));

/** INFO commandstats: calls per command, since the server started. */
async function commandCalls(): Promise<Map<string, number>> {
  const info = await stats.info('commandstats');
  return new Map([...info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
}
/**
 * The commands Redis ran while `run` ran, by name: everything but the INFO that counts them, and
 * the PING a subscription's connection answers every 15 s (src/limits/redis.ts), which no request sends.
 */
async function commandsDuring(run: () => Promise<void>): Promise<Record<string, number>> {
  const before = await commandCalls();
  await run();
  const after = await commandCalls();
  return Object.fromEntries([...after].filter(([name, calls]) => !['info', 'ping'].includes(name) && calls > (before.get(name) ?? 0)).map(([name, calls]) => [name, calls - (before.get(name) ?? 0)]));
}

const grant = (service: TestService, from: string, basic = client.basic) =>
  request(service.app).post('/token').type('form').set('X-Forwarded-For', from).set('Authorization', basic).send({ grant_type: 'client_credentials' });
const impostor = () => basicAuth(client.id, 'not-the-secret');

/** LIMIT failed client authentications from `from` at `service`: the source is then blocked. */
async function failUpToTheLimit(service: TestService, from: string): Promise<void> {
  for (let i = 0; i < LIMIT; i++) expect((await grant(service, from, impostor())).status).toBe(401);
}

function expectRefused(res: request.Response): void {
  expect(res.status).toBe(429);
  expect(res.body).toEqual(TOO_MANY);
  expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60); // CLIENT_AUTH_FAILURE_WINDOW
}

describe('client_auth without a Redis round trip', () => {
  it('a successful client authentication sends Redis no command once the replica has subscribed and read the blocks', async () => {
    const [service] = services;
    await untilSynced();
    const statuses: number[] = [];
    const commands = await commandsDuring(async () => {
      for (let i = 0; i < 20; i++) statuses.push((await grant(service!, `192.0.2.${i + 1}`)).status);
    });
    expect(statuses).toEqual(Array(20).fill(200));
    expect(commands).toEqual({});
    // The count is exact: a failed one does reach Redis (its count is shared).
    const failed = await commandsDuring(async () => {
      expect((await grant(service!, '192.0.2.100', impostor())).status).toBe(401);
    });
    expect(failed).toMatchObject({ evalsha: 1 });
  });

  it('a source blocked by failures at one replica is refused at another that never saw a failure, with no Redis command there', async () => {
    const [a] = services;
    const b = await replica();
    await untilSynced();
    const from = '198.51.100.7';
    await failUpToTheLimit(a!, from);
    let refused: request.Response | undefined;
    const commands = await commandsDuring(async () => {
      refused = await grant(b, from); // the right secret
    });
    expectRefused(refused!);
    expect(commands).toEqual({});
    expect(await rateLimitRejections(b, 'client_auth')).toBe(1);
    // The trip is audited once, where the limit was reached.
    const trips = (service: TestService) => service.logs.entries('rate_limit_tripped').filter((entry) => entry['ip'] === from);
    expect(trips(a!)).toEqual([expect.objectContaining({ layer: 'client_auth', level: 'warn' })]);
    expect(trips(b)).toEqual([]);
    // Other sources pass at both.
    expect((await grant(b, '198.51.100.8')).status).toBe(200);
    expect((await grant(a!, '198.51.100.8')).status).toBe(200);
  });

  it('a replica started after the block refuses the source: it read the shared set when it subscribed', async () => {
    const [a] = services;
    const from = '198.51.100.20';
    await failUpToTheLimit(a!, from);
    const late = await replica();
    await untilSynced();
    let refused: request.Response | undefined;
    const commands = await commandsDuring(async () => {
      refused = await grant(late, from);
    });
    expectRefused(refused!);
    expect(commands).toEqual({});
    expect((await grant(late, '198.51.100.21')).status).toBe(200);
  });

  it('a replica whose subscription is cut reads per request meanwhile, and once subscribed again knows the blocks made while it was away', async () => {
    const [a] = services;
    const b = await replica();
    await untilSynced();
    // Cut every subscription, and keep them from coming back: SUBSCRIBE is refused for now.
    await stats.call('ACL', 'SETUSER', 'default', '-subscribe');
    try {
      await stats.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitFor('the replicas to notice', async () => (await synced(a!)) === 0 && (await synced(b)) === 0);
      // Meanwhile each check reads the shared count: a success costs a read again...
      const read = await commandsDuring(async () => {
        expect((await grant(b, '198.51.100.30')).status).toBe(200);
      });
      expect(read).toMatchObject({ evalsha: 1 });
      // ...and a block made at A while B is away is refused at B, from that count.
      const from = '198.51.100.31';
      await failUpToTheLimit(a!, from);
      expectRefused(await grant(b, from));
      expect(await synced(b)).toBe(0);
    } finally {
      await stats.call('ACL', 'SETUSER', 'default', '+subscribe');
    }
    await untilSynced();
    let refused: request.Response | undefined;
    const commands = await commandsDuring(async () => {
      refused = await grant(b, '198.51.100.31');
    });
    expectRefused(refused!);
    expect(commands).toEqual({});
    // One warning for the outage and one line when it was over, however many reconnections failed.
    const lines = (service: TestService, start: string) => service.logs.entries().filter((entry) => String(entry['msg']).startsWith(start));
    expect(lines(b, 'redis subscription down')).toEqual([
      expect.objectContaining({ msg: 'redis subscription down: client_auth blocks are read from redis per request until it is back' }),
    ]);
    expect(lines(b, 'redis subscription back')).toEqual([expect.objectContaining({ msg: 'redis subscription back: client_auth blocks are shared again' })]);
    expect(lines(b, 'redis is unreachable')).toEqual([]); // the counters were never in question
  });

  it('a message on the channel that is not a block is ignored', async () => {
    const [a] = services;
    await untilSynced(a!);
    const channel = `${PREFIX}client_auth:blocked`;
    for (const message of ['60000 198.51.100.40 more', '60000', '-5 198.51.100.40', '0 198.51.100.40', '1e9 198.51.100.40', ' 60000 198.51.100.40', '60000\t198.51.100.40', '99999999999 198.51.100.40']) {
      await stats.publish(channel, message);
    }
    await stats.publish(channel, '60000 198.51.100.41'); // well-formed: after the others, so they have all been read once this one is
    await waitFor('the well-formed message to arrive', async () => (await grant(a!, '198.51.100.41')).status === 429);
    expect((await grant(a!, '198.51.100.40')).status).toBe(200);
    expect(await synced(a!)).toBe(1);
  });
});

describe('a source announced twice', () => {
  it('stays blocked until the later of its two ends, whichever came first', async () => {
    const [a] = services;
    await untilSynced(a!);
    const channel = `${PREFIX}client_auth:blocked`;
    // A longer block then a shorter one for .50, a shorter then a longer for .51, and .52 only briefly, as a clock.
    for (const message of ['60000 198.51.100.50', '1000 198.51.100.50', '1000 198.51.100.51', '60000 198.51.100.51', '3000 198.51.100.52']) {
      await stats.publish(channel, message);
    }
    await waitFor('the brief block to arrive', async () => (await grant(a!, '198.51.100.52')).status === 429);
    await waitFor('the brief block to end', async () => (await grant(a!, '198.51.100.52')).status === 200);
    // Each short block arrived before .52's and has ended too: the longer ones still stand.
    expectRefused(await grant(a!, '198.51.100.50'));
    expectRefused(await grant(a!, '198.51.100.51'));
    expect(await synced(a!)).toBe(1);
  });
});

describe('a full copy of the blocks', () => {
  it(`holds ${MAX_BLOCKS} blocks; past them it reads per request, until blocks that have ended make room, and it never drops one that has not`, async () => {
    const prefix = `${PREFIX}full:`;
    const full = await replica(prefix);
    await untilSynced(full);
    const channel = `${prefix}client_auth:blocked`;
    // A block for a minute, then the copy filled up with blocks that end in 2 s (published by one script), then one more.
    await stats.publish(channel, '60000 198.51.100.60');
    await waitFor('the first block to arrive', async () => (await grant(full, '198.51.100.60')).status === 429);
    await stats.eval("for i = 1, tonumber(ARGV[1]) do redis.call('PUBLISH', KEYS[1], ARGV[2] .. ' filler-' .. i) end return 1", 1, channel, String(MAX_BLOCKS - 1), '2000');
    await stats.publish(channel, '60000 198.51.100.61');
    // No room for it: the copy is not complete any more, and client_auth reads the shared count per request.
    await waitFor('the full copy to stop answering', async () => (await synced(full)) === 0, { timeoutMs: 20_000 });
    // It reads the shared set again a while later (FULL_RETRY_MS; nothing in it for this prefix): complete again.
    await untilSynced(full);
    // The fillers have ended by now: the next block makes room by dropping them, and is kept.
    await stats.publish(channel, '60000 198.51.100.62');
    await waitFor('the block after the fillers to arrive', async () => (await grant(full, '198.51.100.62')).status === 429);
    expect(await synced(full)).toBe(1);
    expect((await grant(full, '198.51.100.60')).status).toBe(429); // still blocked: not dropped with the ended ones
    expect((await grant(full, '198.51.100.61')).status).toBe(200); // announced while there was no room: not known here
  });
});
