import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisTarget, RedisTopology } from './redis-target.js';

/** After a failed command, Redis is skipped for this long (or until it reconnects), so requests do not each wait on it. */
const COOLDOWN_MS = 5_000;

/**
 * The one Redis connection of a process, for rate-limit counters only (DESIGN.md: losing Redis
 * loses no data). No request ever waits on a dead Redis: commands are not queued while it is
 * disconnected and time out after 250 ms; ioredis keeps reconnecting in the background. The
 * connection is to one server (REDIS_URL), to the primary a set of sentinels names (it follows a
 * failover to the new primary), or to a Redis Cluster (each key goes to the node of its slot).
 */
export interface RedisLink {
  readonly client: Redis | Cluster;
  readonly topology: RedisTopology;
  /**
   * Sends one raw command (as rate-limit-redis does). On a cluster SCRIPT LOAD goes to every
   * primary, so that an EVALSHA finds its script on whichever primary holds its key.
   */
  call(command: string, ...args: string[]): Promise<unknown>;
  /** True while Redis answers: counters go there. False: they stay in this process's memory. */
  isUsable(): boolean;
  /** A command failed: fall back to memory (a warning is logged once per outage). */
  reportFailure(error: unknown): void;
  /** A command succeeded: an outage (even one the connection never noticed, a hung Redis) is over. */
  reportSuccess(): void;
  /** Resolves once Redis is ready, or after `timeoutMs` (then counting starts in memory). */
  ready(timeoutMs: number): Promise<void>;
  /** Runs `listener` every time Redis becomes usable again. */
  onReady(listener: () => void): void;
  close(): Promise<void>;
}

const retryDelay = (attempt: number) => Math.min(attempt * 250, 2_000);

/** What every connection to a Redis server gets, whatever the topology. */
const SERVER_OPTIONS = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  commandTimeout: 250,
  connectTimeout: 1_000,
  retryStrategy: retryDelay,
  // A primary demoted under an open connection (a Sentinel failover without a restart) answers
  // writes with READONLY: reconnect, through the sentinels, to the new one. Nothing else
  // reconnects: a Redis problem never surfaces as a crash or an unhandled rejection.
  reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 1 : false),
} satisfies RedisOptions;

function createClient(target: RedisTarget): Redis | Cluster {
  switch (target.topology) {
    case 'single':
      return new Redis(target.url, SERVER_OPTIONS);
    case 'sentinel':
      return new Redis({
        ...SERVER_OPTIONS,
        sentinels: [...target.sentinels],
        name: target.master,
        ...credentials(target),
        ...(target.sentinelPassword === undefined ? {} : { sentinelPassword: target.sentinelPassword }),
        sentinelRetryStrategy: retryDelay,
        // Subscribes to the sentinels' +switch-master: a failover is followed at once, even when
        // the old primary lives on (without it, only once that connection breaks).
        failoverDetector: true,
      });
    case 'cluster':
      return new Cluster([...target.nodes], {
        enableOfflineQueue: false,
        clusterRetryStrategy: retryDelay,
        redisOptions: { ...SERVER_OPTIONS, ...credentials(target) },
      });
  }
}

function credentials(target: { readonly username: string | undefined; readonly password: string | undefined }): RedisOptions {
  return {
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password }),
  };
}

export function connectRedis(target: RedisTarget, log: Logger, now: () => number = Date.now): RedisLink {
  const client = createClient(target);
  let down = false;
  let closing = false;
  let skipUntil = 0;
  const listeners: (() => void)[] = [];

  const markDown = (error: unknown) => {
    skipUntil = now() + COOLDOWN_MS;
    if (down || closing) return;
    down = true;
    log.warn({ err: error, topology: target.topology }, 'redis is unreachable: rate limits continue per process, in memory, until it is back');
  };
  const markUp = () => {
    skipUntil = 0;
    if (down) log.info({ topology: target.topology }, 'redis is back: rate limits are shared again');
    down = false;
  };
  client.on('error', markDown);
  // A cluster reports a node's trouble apart from its own ('error' is for the cluster as a whole).
  client.on('node error', markDown);
  client.on('close', () => markDown(new Error('the connection to redis closed')));
  // Both clients say 'ready' when they (re)connect: a new primary after a failover, a cluster
  // whose slots are known again.
  client.on('ready', () => {
    markUp();
    for (const listener of listeners) listener();
  });

  // Chosen once: one server and Sentinel pass every command straight through.
  const call =
    client instanceof Cluster
      ? (command: string, ...args: string[]): Promise<unknown> =>
          command === 'SCRIPT' && args[0] === 'LOAD'
            ? Promise.all(client.nodes('master').map((node) => node.call(command, ...args))).then((shas) => shas[0])
            : client.call(command, ...args)
      : (command: string, ...args: string[]): Promise<unknown> => client.call(command, ...args);

  return {
    client,
    topology: target.topology,
    call,
    isUsable: () => client.status === 'ready' && now() >= skipUntil,
    reportFailure: markDown,
    reportSuccess: () => {
      if (down) markUp();
    },
    ready: (timeoutMs) =>
      client.status === 'ready'
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, timeoutMs);
            client.once('ready', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
    onReady: (listener) => {
      listeners.push(listener);
    },
    close: async () => {
      closing = true;
      client.disconnect();
    },
  };
}
