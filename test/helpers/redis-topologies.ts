import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type { HostPort } from '../../src/limits/redis-target.js';
import { freePort, machineClockEnv } from './process.js';
import { waitFor } from './wait.js';

// Redis Sentinel and Redis Cluster of a test's own, from the redis-server and redis-cli binaries
// (README, Testing): on free loopback ports, in a temporary directory, stopped and removed by
// `stop()`, which kills only the processes started here.

const run = promisify(execFile);
/** Generous: these settle in a few seconds, but the machine may be busy with other test files. */
const SETTLE_MS = 45_000;

export interface RedisSentinelSet {
  /** REDIS_SENTINELS. */
  readonly sentinels: string;
  /** REDIS_SENTINEL_MASTER. */
  readonly master: string;
  /** The port of the server that started as primary, and of the one that started as its replica. */
  readonly primaryPort: number;
  readonly replicaPort: number;
  /** Where the sentinels say the primary is now. */
  currentPrimaryPort(): Promise<number | undefined>;
  /** SIGKILL one of the two data servers (by port), and wait for it to exit. */
  kill(port: number): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisClusterSet {
  /** REDIS_CLUSTER_NODES. */
  readonly nodes: string;
  readonly ports: readonly number[];
  /** SIGKILL one primary; `restart` brings it back with its slots (its nodes file), and empty. */
  kill(port: number): Promise<void>;
  restart(port: number): Promise<void>;
  stop(): Promise<void>;
}

/** Fails loudly, never skips, where the binaries the topology tests run are missing (.ci/run has them). */
async function requireRedisBinaries(): Promise<void> {
  for (const binary of ['redis-server', 'redis-cli']) {
    await run(binary, ['--version'], { env: machineClockEnv() }).catch((error: unknown) => {
      throw new Error(`${binary} must be on PATH for the Redis Sentinel and Cluster tests (README, Testing): ${String(error)}`);
    });
  }
}

/** Processes of one topology, and its directory: what `stop()` removes. */
function processGroup(dir: string) {
  const children = new Map<number, ChildProcess>();
  return {
    dir,
    start(port: number, args: readonly string[]) {
      const child = spawn('redis-server', [...args], { cwd: dir, stdio: 'ignore', env: machineClockEnv() });
      child.on('error', () => undefined); // a missing binary shows as a server that never answers (answering below)
      children.set(port, child);
    },
    async kill(port: number) {
      const child = children.get(port);
      children.delete(port);
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      await Promise.all([...children.keys()].map((port) => this.kill(port)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A primary, its replica and three sentinels (quorum 2) that fail over within a few seconds. */
export async function startRedisSentinelSet(): Promise<RedisSentinelSet> {
  await requireRedisBinaries();
  const group = processGroup(await mkdtemp(join(tmpdir(), 'tessera-sentinel-')));
  const master = 'tessera-test';
  try {
    const [primaryPort, replicaPort, ...sentinelPorts] = await distinctFreePorts(5);
    const server = (port: number, ...extra: string[]) =>
      group.start(port, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', group.dir, ...extra]);
    server(primaryPort!);
    server(replicaPort!, '--replicaof', '127.0.0.1', String(primaryPort));
    await waitFor('the replica to sync with the primary', async () => /master_link_status:up/.test(await info(replicaPort!, 'replication')), { timeoutMs: SETTLE_MS, intervalMs: 100 });
    for (const port of sentinelPorts) {
      const config = join(group.dir, `sentinel-${port}.conf`);
      // Sentinel rewrites its configuration file: each gets one of its own.
      await writeFile(
        config,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${group.dir}`,
          `sentinel monitor ${master} 127.0.0.1 ${primaryPort} 2`,
          `sentinel down-after-milliseconds ${master} 1000`,
          `sentinel failover-timeout ${master} 3000`,
          `sentinel parallel-syncs ${master} 1`,
          '',
        ].join('\n'),
      );
      group.start(port, [config, '--sentinel']);
    }
    // Ready to fail over once every sentinel knows the replica and the two other sentinels.
    await waitFor(
      'the sentinels to know the replica and each other',
      async () => {
        const views = await Promise.all(sentinelPorts.map((port) => sentinelView(port, master)));
        return views.every((view) => view?.['num-slaves'] === '1' && view['num-other-sentinels'] === '2');
      },
      { timeoutMs: SETTLE_MS, intervalMs: 200 },
    );
    return {
      sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
      master,
      primaryPort: primaryPort!,
      replicaPort: replicaPort!,
      async currentPrimaryPort() {
        for (const port of sentinelPorts) {
          const address = await withServer(port, (redis) => redis.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', master)).catch(() => undefined);
          if (Array.isArray(address)) return Number(address[1]);
        }
        return undefined;
      },
      kill: (port) => group.kill(port),
      stop: () => group.stop(),
    };
  } catch (error) {
    await group.stop();
    throw error;
  }
}

/** Three primaries, no replicas, every slot assigned by `redis-cli --cluster create`. */
export async function startRedisClusterSet(): Promise<RedisClusterSet> {
  await requireRedisBinaries();
  const group = processGroup(await mkdtemp(join(tmpdir(), 'tessera-cluster-')));
  try {
    const allPorts = await distinctFreePorts(6);
    const ports = allPorts.slice(0, 3);
    const startNode = (port: number, i: number) =>
      group.start(port, [
        '--port', String(port),
        // The bus port is chosen too: port + 10000 (the default) may be taken, or ephemeral.
        '--cluster-port', String(allPorts[3 + i]),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(group.dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '2000',
        '--save', '',
        '--appendonly', 'no',
        '--dir', group.dir,
      ]);
    ports.forEach(startNode);
    await waitFor('the cluster nodes to answer PING', async () => (await Promise.all(ports.map(answersPing))).every(Boolean), { timeoutMs: SETTLE_MS, intervalMs: 100 });
    await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      env: machineClockEnv(),
      timeout: SETTLE_MS,
    });
    const untilClusterOk = () =>
      waitFor(
        'every node to see the cluster as ok',
        async () => (await Promise.all(ports.map((port) => withServer(port, (redis) => redis.call('CLUSTER', 'INFO')).catch(() => '')))).every((text) => /cluster_state:ok/.test(String(text))),
        { timeoutMs: SETTLE_MS, intervalMs: 200 },
      );
    await untilClusterOk();
    return {
      nodes: ports.map((port) => `127.0.0.1:${port}`).join(','),
      ports,
      kill: (port) => group.kill(port),
      async restart(port) {
        startNode(port, ports.indexOf(port));
        await untilClusterOk();
      },
      stop: () => group.stop(),
    };
  } catch (error) {
    await group.stop();
    throw error;
  }
}

/** The keys under `prefix` on each server, by port (KEYS on each: a cluster node answers for its own slots). */
export async function keysByServer(ports: readonly number[], prefix: string): Promise<Map<number, string[]>> {
  return new Map(await Promise.all(ports.map(async (port) => [port, await withServer(port, (redis) => redis.keys(`${prefix}*`))] as const)));
}

/** SCRIPT FLUSH on each server: what a node restarted empty has forgotten. */
export async function flushScripts(ports: readonly number[]): Promise<void> {
  await Promise.all(ports.map((port) => withServer(port, (redis) => redis.call('SCRIPT', 'FLUSH'))));
}

/** The hash slot of each key, as the cluster computes it. */
export async function slotsOf(port: number, keys: readonly string[]): Promise<Set<number>> {
  return withServer(port, async (redis) => new Set(await Promise.all(keys.map(async (key) => Number(await redis.call('CLUSTER', 'KEYSLOT', key))))));
}

export function hostPorts(list: string): HostPort[] {
  return list.split(',').map((entry) => {
    const [host = '', port = ''] = entry.split(':');
    return { host, port: Number(port) };
  });
}

async function info(port: number, section: string): Promise<string> {
  return withServer(port, (redis) => redis.info(section)).catch(() => '');
}

async function sentinelView(port: number, master: string): Promise<Record<string, string> | undefined> {
  const flat = await withServer(port, (redis) => redis.call('SENTINEL', 'MASTER', master) as Promise<string[]>).catch(() => undefined);
  if (!Array.isArray(flat)) return undefined;
  const view: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) view[flat[i]!] = flat[i + 1]!;
  return view;
}

async function answersPing(port: number): Promise<boolean> {
  return withServer(port, async (redis) => (await redis.ping()) === 'PONG').catch(() => false);
}

async function withServer<T>(port: number, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}
