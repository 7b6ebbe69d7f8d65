import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { stopAll } from './helpers/process.js';
import { keysByServer, type RedisSentinelSet, startRedisSentinelSet } from './helpers/redis-topologies.js';
import { expectCountingInRedis, expectSharedClientAuthBlock, expectSharedLoginLimit, type Replica, rateLimitMode, redisWarnings, startDeployment, untilCountingInRedis } from './helpers/replicas.js';
import { fetchPasswordGrant, type TestClient, uniqueName } from './helpers/service.js';
import { waitFor } from './helpers/wait.js';

// Two `tessera serve` replicas on one database, their rate limits on a Redis Sentinel set the file
// starts (a primary, a replica, three sentinels): the limits are shared, survive the loss of the
// primary without a 5xx, and are shared again through the promoted replica without a restart.

const LIMIT = 4; // LOGIN_IP_ACCOUNT_FAILURE_LIMIT: both replicas share the 127.0.0.1 source
const CLIENT_AUTH_LIMIT = 6; // CLIENT_AUTH_FAILURE_LIMIT, from sources X-Forwarded-For names
const FAILOVER_MS = 60_000;

let database: TestDatabase;
let sentinel: RedisSentinelSet;
let prefix: string;
let client: TestClient;
let user: { username: string; password: string };
let replicas: readonly Replica[];

beforeAll(async () => {
  database = await createTestDatabase();
  sentinel = await startRedisSentinelSet();
  const deployment = await startDeployment(
    database,
    { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_MASTER: sentinel.master },
    { LOGIN_IP_ACCOUNT_FAILURE_LIMIT: String(LIMIT), CLIENT_AUTH_FAILURE_LIMIT: String(CLIENT_AUTH_LIMIT), TRUST_PROXY: 'loopback' },
  );
  ({ replicas, prefix, client } = deployment);
  user = deployment.users[0]!;
}, 120_000);
afterAll(async () => {
  await stopAll();
  await sentinel?.stop();
  await database?.drop();
});

describe('rate limits on Redis Sentinel', () => {
  it('both replicas count on the primary the sentinels name, and say so in /readyz and /metrics', async () => {
    await expectCountingInRedis(replicas, 'sentinel');
  });

  it('a login limit is shared by the two replicas', async () => {
    await expectSharedLoginLimit(replicas, client, LIMIT);
    // On the primary, whichever server that is now (the failover test may have run first).
    const primary = (await sentinel.currentPrimaryPort())!;
    expect((await keysByServer([primary], `${prefix}login_ip_account:`)).get(primary)).not.toEqual([]);
  });

  it('a source blocked by failed client authentications at one replica is refused at the other, which heard of it over the subscription', async () => {
    await expectSharedClientAuthBlock(replicas, client, CLIENT_AUTH_LIMIT);
  });

  it('the primary killed under load: no 5xx, the limits hold per process, and are shared again through the new primary on both replicas', { timeout: 3 * FAILOVER_MS }, async () => {
    const guessed = uniqueName('guessed');
    const rounds: { good: number; bad: number; afterKill: boolean }[] = [];
    let killed = false;
    let stopping = false;
    // Each round, on one replica then the other: the right password of one user, and a wrong one for another account.
    const load = (async () => {
      for (let i = 0; !stopping; i++) {
        const { base } = replicas[i % 2]!;
        const afterKill = killed;
        const [good, bad] = await Promise.all([
          fetchPasswordGrant(base, client, user),
          fetchPasswordGrant(base, client, { username: guessed, password: `wrong-${i}` }),
        ]);
        rounds.push({ good: good.status, bad: bad.status, afterKill });
      }
    })();
    const roundsSoFar = (count: number) => () => rounds.length >= count;
    await untilCountingInRedis(replicas);

    // Past the limit first, so that both replicas have read the shared count before Redis goes.
    await waitFor('the load to pass the limit', roundsSoFar(LIMIT + 2), { timeoutMs: FAILOVER_MS });
    const beforeKill = rounds.length;
    await sentinel.kill(sentinel.primaryPort);
    killed = true;
    // Redis is gone for at least down-after-milliseconds: each replica says it counts in memory.
    await Promise.all(
      replicas.map((replica) => waitFor('the replica to fall back to memory', async () => (await rateLimitMode(replica)).rate_limits === 'memory_fallback', { timeoutMs: FAILOVER_MS })),
    );
    await waitFor('the sentinels to promote the replica', async () => (await sentinel.currentPrimaryPort()) === sentinel.replicaPort, { timeoutMs: FAILOVER_MS, intervalMs: 100 });
    await Promise.all(
      replicas.map((replica) => waitFor('the replica to count in Redis again', async () => (await rateLimitMode(replica)).rate_limits === 'redis', { timeoutMs: FAILOVER_MS })),
    );
    // Enough rounds after the kill for each replica, counting alone, to reach the limit.
    await waitFor('more load after the promotion', roundsSoFar(Math.max(rounds.length + LIMIT + 2, beforeKill + 2 * LIMIT + 4)), { timeoutMs: FAILOVER_MS });
    stopping = true;
    await load;

    // Never a 5xx: the right password always logs in; a wrong one is verified or refused.
    expect(rounds.filter((round) => round.good !== 200)).toEqual([]);
    expect(rounds.filter((round) => round.bad !== 400 && round.bad !== 429)).toEqual([]);
    // Shared, the layer verifies LIMIT wrong passwords. A replica that counts alone (Redis gone,
    // or one command timed out on a busy machine) goes on from the last shared count it saw and
    // stops at LIMIT of its own: never more than the shared LIMIT and LIMIT per replica.
    expect(rounds.filter((round) => round.bad === 400).length).toBeLessThanOrEqual(3 * LIMIT);
    // The limit held on both replicas after the primary was gone, and the last rounds, through the new primary, are refused.
    for (const parity of [0, 1]) expect(rounds.some((round, i) => round.afterKill && i % 2 === parity && round.bad === 429)).toBe(true);
    expect(rounds.slice(-2).map((round) => round.bad)).toEqual([429, 429]);

    // Shared again, through the promoted replica, by both replicas that were never restarted.
    const before = (await keysByServer([sentinel.replicaPort], `${prefix}login_ip_account:`)).get(sentinel.replicaPort)!;
    await expectSharedLoginLimit(replicas, client, LIMIT);
    expect((await keysByServer([sentinel.replicaPort], `${prefix}login_ip_account:`)).get(sentinel.replicaPort)!.length).toBeGreaterThan(before.length);
    await expectCountingInRedis(replicas, 'sentinel');
    // The client_auth subscription followed the failover too.
    await expectSharedClientAuthBlock(replicas, client, CLIENT_AUTH_LIMIT);
    // The outage was noticed and logged.
    for (const replica of replicas) expect(redisWarnings(replica)).not.toEqual([]);
  });
});
