import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { Env } from '../../src/config.js';
import type { TestDatabase } from './database.js';
import { freePort, logLines, type Spawned, startTessera, waitUntilReady } from './process.js';
import { waitFor } from './wait.js';
import { basicAuth, createTestClient, createTestUser, fetchPasswordGrant, startTestService, type TestClient, testEnv, uniqueName } from './service.js';

/** A `tessera serve` the test started: one replica of a deployment. */
export interface Replica {
  readonly base: string;
  readonly server: Spawned;
}

/** `tessera serve` on a free port with `settings`, once it is ready. */
export async function startReplica(settings: NodeJS.ProcessEnv): Promise<Replica> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = startTessera(['serve'], { PATH: process.env['PATH'], ...settings, HOST: '127.0.0.1', PORT: String(port) });
  await waitUntilReady(server, base);
  return { base, server };
}

/** GET /readyz's rate-limit checks: where this replica counts now, and through which Redis deployment. */
export async function rateLimitMode(replica: Replica): Promise<{ rate_limits: string; rate_limit_topology: string }> {
  const { checks } = (await (await fetch(`${replica.base}/readyz`)).json()) as { checks: { rate_limits: string; rate_limit_topology: string } };
  return { rate_limits: checks.rate_limits, rate_limit_topology: checks.rate_limit_topology };
}

/** One value of a gauge or counter series from the replica's /metrics, e.g. `tessera_rate_limit_topology{topology="cluster"}`. */
export async function metricValue(replica: Replica, series: string): Promise<number | undefined> {
  const text = await (await fetch(`${replica.base}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The replica's log lines that say Redis could not be used (a failed command, a lost connection). */
export function redisWarnings(replica: Replica): Record<string, unknown>[] {
  return logLines(replica.server.stdout()).filter((line) => typeof line['msg'] === 'string' && line['msg'].startsWith('redis is unreachable'));
}

/**
 * The errors among those that only a cluster gives, and only to a client that does not route
 * right: a key on another node (MOVED, ASK), keys of several slots in one command (CROSSSLOT), a
 * script the node lacks (NOSCRIPT), slots nobody serves (CLUSTERDOWN, TRYAGAIN). A timeout on a
 * busy machine is none of them. `since`: how many warnings to pass over (those of an earlier test).
 */
export function clusterErrors(replica: Replica, since = 0): string[] {
  return redisWarnings(replica)
    .slice(since)
    .map((line) => String((line['err'] as { message?: unknown } | undefined)?.message ?? ''))
    .filter((message) => /^(MOVED|ASK|CROSSSLOT|NOSCRIPT|CLUSTERDOWN|TRYAGAIN)\b/.test(message));
}

/**
 * Wrong passwords for `username`, one after the other, taking turns over `replicas`: the status
 * of each (400 while verified, 429 once a limit refuses).
 */
export async function wrongPasswords(replicas: readonly Replica[], client: { readonly basic: string }, username: string, count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i++) {
    statuses.push((await fetchPasswordGrant(replicas[i % replicas.length]!.base, client, { username, password: `wrong-${i}` })).status);
  }
  return statuses;
}

/** Two replicas on one database and one Redis deployment, with what they serve. */
export interface Deployment {
  readonly replicas: readonly Replica[];
  /** The Redis key prefix both replicas count under. */
  readonly prefix: string;
  readonly client: TestClient;
  readonly users: readonly { readonly username: string; readonly password: string }[];
}

/**
 * Two `tessera serve` replicas on `database` with `redisEnv` (REDIS_SENTINELS, REDIS_CLUSTER_NODES,
 * ...; REDIS_URL blank, so that the test environment's shared Redis is not a second choice) and
 * `env`, once both are ready. The client and `userCount` users are made in-process first.
 */
export async function startDeployment(database: TestDatabase, redisEnv: Env, env: Env = {}, userCount = 1): Promise<Deployment> {
  const prefix = `tessera-test:${database.name}:`;
  const settings = testEnv(database, {
    KEY_ENCRYPTION_KEYS: randomBytes(32).toString('base64'),
    REDIS_URL: '',
    RATE_LIMIT_PREFIX: prefix,
    ...redisEnv,
    ...env,
  }) as NodeJS.ProcessEnv;
  const seeding = await startTestService(database, { env: settings });
  const client = await createTestClient(seeding);
  const users = await Promise.all(Array.from({ length: userCount }, () => createTestUser(seeding)));
  await seeding.close();
  const replicas = await Promise.all([startReplica(settings), startReplica(settings)]);
  return { replicas, prefix, client, users };
}

/**
 * Until every replica counts in Redis. A command that times out (250 ms) on a busy machine makes a
 * replica count in memory for 5 s, by design: tests that need shared counts wait that out.
 */
export async function untilCountingInRedis(replicas: readonly Replica[]): Promise<void> {
  await Promise.all(replicas.map((replica) => waitFor('the replica to count in Redis', async () => (await rateLimitMode(replica)).rate_limits === 'redis', { timeoutMs: 60_000 })));
}

/** Every replica counts in Redis, through `topology`, as /readyz and /metrics both say. */
export async function expectCountingInRedis(replicas: readonly Replica[], topology: string): Promise<void> {
  await untilCountingInRedis(replicas);
  for (const replica of replicas) {
    expect(await rateLimitMode(replica)).toEqual({ rate_limits: 'redis', rate_limit_topology: topology });
    expect(await metricValue(replica, `tessera_rate_limit_topology{topology="${topology}"}`)).toBe(1);
    expect(await metricValue(replica, 'tessera_rate_limit_backend{backend="redis"}')).toBe(1);
  }
}

/**
 * Wrong passwords for a fresh account, taking turns over the replicas: each verifies only part of
 * `limit` (LOGIN_IP_ACCOUNT_FAILURE_LIMIT), so only a count they share refuses the next on both.
 * A run during which a replica fell back to memory (a command timed out on a busy machine: it
 * logs that, and says memory_fallback for the next 5 s) proves nothing either way: it is run again
 * with another account, a few times at most. A run with both replicas in Redis throughout must pass.
 */
export async function expectSharedLoginLimit(replicas: readonly Replica[], client: { readonly basic: string }, limit: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await untilCountingInRedis(replicas);
    const warned = replicas.map((replica) => redisWarnings(replica).length);
    const username = uniqueName('shared');
    const statuses = [...(await wrongPasswords(replicas, client, username, limit)), ...(await wrongPasswords(replicas, client, username, replicas.length))];
    const modes = await Promise.all(replicas.map(rateLimitMode));
    const disturbed = modes.some((mode) => mode.rate_limits !== 'redis') || replicas.some((replica, i) => redisWarnings(replica).length > warned[i]!);
    if (disturbed && attempt < 3) continue;
    expect(disturbed, 'a replica fell back to memory during every attempt').toBe(false);
    expect(statuses).toEqual([...Array(limit).fill(400), ...replicas.map(() => 429)]);
    return;
  }
}

/**
 * A source blocked by failed client authentications at the first replica is refused at the others
 * (the right secret, 429), which answered from their copy of the blocks throughout: the block
 * reached them over the subscription (src/limits/blocked-sources.ts). Needs TRUST_PROXY=loopback
 * (the source is an X-Forwarded-For) and CLIENT_AUTH_FAILURE_LIMIT=`limit`. Retried, like
 * expectSharedLoginLimit, when a replica fell back to memory meanwhile.
 */
let clientAuthSources = 0;
export async function expectSharedClientAuthBlock(replicas: readonly Replica[], client: TestClient, limit: number): Promise<void> {
  const revoke = (replica: Replica, from: string, authorization: string) =>
    fetch(`${replica.base}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization, 'x-forwarded-for': from },
      body: new URLSearchParams({ token: 'A'.repeat(43) }),
    });
  const synced = async () => (await Promise.all(replicas.map((replica) => metricValue(replica, 'tessera_client_auth_blocks_synced')))).every((value) => value === 1);
  for (let attempt = 1; ; attempt++) {
    await untilCountingInRedis(replicas);
    await waitFor('every replica to answer client_auth from its copy of the blocks', synced, { timeoutMs: 60_000 });
    const warned = replicas.map((replica) => redisWarnings(replica).length);
    // A source no earlier call in this file has blocked (a block lasts its window): one random
    // digit after the attempt number collided with an earlier call's once in ten.
    const from = `198.51.100.${(clientAuthSources += 1)}`;
    const failed: number[] = [];
    for (let i = 0; i < limit; i++) failed.push((await revoke(replicas[0]!, from, basicAuth(client.id, 'not-the-secret'))).status);
    // The announcement takes a moment: at once from the node it is made on, later from another
    // cluster node (over the cluster bus), where a subscription may be after a failover.
    const others = await Promise.all(
      replicas.slice(1).map((replica) =>
        waitFor('the block to reach the replica', async () => ((await revoke(replica, from, client.basic)).status === 429 ? 429 : false), { timeoutMs: 2_000, intervalMs: 10 }).catch(() => 200),
      ),
    );
    const disturbed = !(await synced()) || replicas.some((replica, i) => redisWarnings(replica).length > warned[i]!);
    if (disturbed && attempt < 3) continue;
    expect(disturbed, 'a replica fell back to reading per request during every attempt').toBe(false);
    expect(failed).toEqual(Array(limit).fill(401));
    expect(others).toEqual(replicas.slice(1).map(() => 429));
    return;
  }
}
