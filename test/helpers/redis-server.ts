import { type ChildProcess, spawn } from 'node:child_process';
import { Cluster, Redis } from 'ioredis';
import type { RedisTarget } from '../../src/limits/redis-target.js';
import { freePort, machineClockEnv } from './process.js';
import { waitFor } from './wait.js';

/**
 * A Redis server of the test's own, on a free loopback port, that the test may kill, restart,
 * hang and wake (the shared Redis on 6379 is never touched). Nothing is saved to disk, so a
 * restarted server is empty.
 */
export interface RedisServer {
  readonly url: string;
  start(): Promise<void>;
  /** SIGKILL, and wait for the process to exit. */
  stop(): Promise<void>;
  /** A hung Redis: the process stops answering but keeps its connections open (SIGSTOP). */
  freeze(): void;
  thaw(): void;
}

export async function startRedisServer(): Promise<RedisServer> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    url,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
        stdio: 'ignore',
        env: machineClockEnv(), // libfaketime and Redis's allocator do not mix: Redis never answers under it
      });
      await waitFor('redis-server to answer PING', () => answersPing(url), { intervalMs: 100 });
    },
    async stop() {
      const running = child;
      child = undefined;
      if (running && running.exitCode === null) {
        const exited = new Promise((resolve) => running.once('exit', resolve));
        running.kill('SIGCONT'); // a frozen process must be able to die
        running.kill('SIGKILL');
        await exited;
      }
    },
    freeze: () => void child?.kill('SIGSTOP'),
    thaw: () => void child?.kill('SIGCONT'),
  };
  await server.start();
  return server;
}

/** The keys under `prefix` in the Redis at `url`. */
export async function redisKeys(url: string, prefix: string): Promise<string[]> {
  return withRedis(url, (redis) => redis.keys(`${prefix}*`));
}

/** One command to the Redis at `url`, its reply as ioredis gives it. */
export async function redisCall(url: string, command: string, ...args: string[]): Promise<unknown> {
  return withRedis(url, (redis) => redis.call(command, ...args));
}

/** How many clients the Redis at `url` has, not counting the connection that asks. */
export async function redisClientCount(url: string): Promise<number> {
  return withRedis(url, async (redis) => ((await redis.call('CLIENT', 'LIST')) as string).trim().split('\n').length - 1);
}

async function withRedis<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

async function answersPing(url: string): Promise<boolean> {
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
}

/**
 * Runs `use` on a connection to each primary of `target` (one server, the primary the sentinels
 * name, or every primary of a cluster: each holds the keys of its own slots).
 */
export async function eachPrimary(target: RedisTarget, use: (redis: Redis) => Promise<void>): Promise<void> {
  const once = { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null } as const;
  const credentials = target.topology === 'single' ? {} : { username: target.username, password: target.password };
  if (target.topology === 'cluster') {
    const cluster = new Cluster([...target.nodes], { lazyConnect: true, clusterRetryStrategy: () => null, redisOptions: credentials });
    cluster.on('error', () => undefined);
    try {
      await cluster.connect();
      for (const node of cluster.nodes('master')) await use(node);
    } finally {
      cluster.disconnect();
    }
    return;
  }
  const redis =
    target.topology === 'single'
      ? new Redis(target.url, once)
      : new Redis({ ...once, ...credentials, sentinels: [...target.sentinels], name: target.master, sentinelPassword: target.sentinelPassword, sentinelRetryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await use(redis);
  } finally {
    redis.disconnect();
  }
}
