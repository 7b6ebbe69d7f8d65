import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { stopAll } from './helpers/process.js';
import { flushScripts, keysByServer, type RedisClusterSet, slotsOf, startRedisClusterSet } from './helpers/redis-topologies.js';
import { clusterErrors, expectCountingInRedis, expectSharedClientAuthBlock, expectSharedLoginLimit, type Replica, rateLimitMode, redisWarnings, startDeployment, untilCountingInRedis, wrongPasswords } from './helpers/replicas.js';
import { basicAuth, fetchPasswordGrant, type TestClient, uniqueName } from './helpers/service.js';
import { waitFor } from './helpers/wait.js';

// Two `tessera serve` replicas on one database, their rate limits on a three-primary Redis Cluster
// the file starts: every limiter operation works (no CROSSSLOT, MOVED or NOSCRIPT reaches a
// request or makes a replica fall back to memory), and the counters spread over the nodes.

const LIMIT = 4; // LOGIN_IP_ACCOUNT_FAILURE_LIMIT: both replicas share the 127.0.0.1 source
const CLIENT_AUTH_LIMIT = 6; // CLIENT_AUTH_FAILURE_LIMIT, from sources X-Forwarded-For names: above the 4 wrong secrets from 127.0.0.1 below

let database: TestDatabase;
let cluster: RedisClusterSet;
let prefix: string;
let client: TestClient;
let users: readonly { username: string; password: string }[];
let replicas: readonly Replica[];

beforeAll(async () => {
  database = await createTestDatabase();
  cluster = await startRedisClusterSet();
  ({ replicas, prefix, client, users } = await startDeployment(
    database,
    { REDIS_CLUSTER_NODES: cluster.nodes },
    { LOGIN_IP_ACCOUNT_FAILURE_LIMIT: String(LIMIT), CLIENT_AUTH_FAILURE_LIMIT: String(CLIENT_AUTH_LIMIT), TRUST_PROXY: 'loopback' },
    4,
  ));
}, 120_000);
afterAll(async () => {
  await stopAll();
  await cluster?.stop();
  await database?.drop();
});

const form = (base: string, path: string, authorization: string, body: Record<string, string>) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization },
    body: new URLSearchParams(body),
  });

describe('rate limits on Redis Cluster', () => {
  it('both replicas count on the cluster, and say so in /readyz and /metrics', async () => {
    await expectCountingInRedis(replicas, 'cluster');
  });

  it('a login limit is shared by the two replicas', async () => {
    await expectSharedLoginLimit(replicas, client, LIMIT);
  });

  it('a source blocked by failed client authentications at one replica is refused at the other: the announcement reaches every node', async () => {
    await expectSharedClientAuthBlock(replicas, client, CLIENT_AUTH_LIMIT);
  });

  it('every limiter operation works on the cluster, with its counters over several slots and nodes', async () => {
    await untilCountingInRedis(replicas);
    const since = replicas.map((replica) => redisWarnings(replica).length);
    const statuses: number[] = [];
    for (const [i, user] of users.entries()) {
      const { base } = replicas[i % 2]!;
      const other = replicas[(i + 1) % 2]!.base;
      // login_ip, the in-flight slots, known_source and the account resets; then the client layer.
      const login = await fetchPasswordGrant(base, client, user);
      statuses.push(login.status);
      const { refresh_token: refreshToken } = (await login.json()) as { refresh_token: string };
      const refreshed = await form(other, '/token', client.basic, { grant_type: 'refresh_token', refresh_token: refreshToken });
      statuses.push(refreshed.status);
      const { refresh_token: latest } = (await refreshed.json()) as { refresh_token: string };
      statuses.push((await form(base, '/revoke', client.basic, { token: latest })).status);
      // The failure layers: a wrong password (login_ip_account; login_account, where this source has
      // never logged in to the account), a wrong client secret (client_auth).
      statuses.push((await fetchPasswordGrant(other, client, { username: user.username, password: 'wrong' })).status);
      statuses.push((await fetchPasswordGrant(base, client, { username: uniqueName('unknown'), password: 'wrong' })).status);
      statuses.push((await fetchPasswordGrant(base, { basic: basicAuth(client.id, 'not-the-secret') }, user)).status);
    }
    expect(statuses).toEqual(users.flatMap(() => [200, 200, 200, 400, 400, 401]));

    // No command was misrouted: a failure would have been logged (and made the replica count in memory for a while).
    replicas.forEach((replica, i) => expect(clusterErrors(replica, since[i])).toEqual([]));
    const byNode = await keysByServer(cluster.ports, prefix);
    const keys = [...byNode.values()].flat();
    for (const layer of ['login_ip:', 'login_ip_account:', 'login_account:', 'known_source:', 'client:', 'client_auth:']) {
      expect(keys.some((key) => key.startsWith(`${prefix}${layer}`)), layer).toBe(true);
    }
    expect([...byNode.values()].filter((onNode) => onNode.length > 0).length).toBeGreaterThan(1);
    expect((await slotsOf(cluster.ports[0]!, keys)).size).toBeGreaterThan(1);
  });

  it('a primary that has lost its scripts (restarted empty) costs no request and no fall-back to memory', async () => {
    // rate-limit-redis runs its scripts by SHA and reloads one that a node lacks: on a cluster the
    // reload must reach the node that holds the key, not any node.
    await untilCountingInRedis(replicas);
    const since = replicas.map((replica) => redisWarnings(replica).length);
    await flushScripts(cluster.ports);
    const guessed = Array.from({ length: 6 }, () => uniqueName('flushed'));
    for (const username of guessed) expect(await wrongPasswords(replicas, client, username, 2)).toEqual([400, 400]);
    replicas.forEach((replica, i) => expect(clusterErrors(replica, since[i])).toEqual([]));
  });

  it('a primary lost and back (empty): no 5xx, limits per process meanwhile, then shared again on both replicas without a restart', { timeout: 180_000 }, async () => {
    await untilCountingInRedis(replicas);
    const [lost] = cluster.ports;
    await cluster.kill(lost!);
    // Its slots have no primary: each replica limits from its own memory, and every request is answered.
    const statuses: number[] = [];
    await Promise.all(
      replicas.map((replica) =>
        waitFor(
          'the replica to fall back to memory',
          async () => {
            statuses.push(...(await wrongPasswords([replica], client, uniqueName('while-down'), 1)));
            return (await rateLimitMode(replica)).rate_limits === 'memory_fallback';
          },
          { timeoutMs: 60_000 },
        ),
      ),
    );
    await cluster.restart(lost!);
    await untilCountingInRedis(replicas);
    expect(statuses.filter((status) => status !== 400)).toEqual([]);
    await expectSharedLoginLimit(replicas, client, LIMIT);
    // A subscription on the lost node moved to another one, and read the blocks again.
    await expectSharedClientAuthBlock(replicas, client, CLIENT_AUTH_LIMIT);
  });
});
