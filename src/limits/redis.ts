import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { SERVER_OPTIONS, credentials, retryDelay, sentinelOptions } from './redis-options.js';
import { createSubscriber, keepSubscribed, type SubscriptionHandlers } from './redis-subscription.js';
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
  /**
   * Keeps a connection of its own subscribed to `channel` (a subscribed connection can send no other
   * command) until close(): it reconnects by itself (on a cluster, first to the node holding the
   * key named like the channel, then to any node: every node hears every PUBLISH), and checks
   * every 15 s that the connection still answers (src/limits/redis-subscription.ts).
   */
  subscribe(channel: string, handlers: SubscriptionHandlers): void;
  close(): Promise<void>;
}

function createClient(target: RedisTarget): Redis | Cluster {
  switch (target.topology) {
    case 'single':
      return new Redis(target.url, SERVER_OPTIONS);
    case 'sentinel':
      return new Redis(sentinelOptions(target, SERVER_OPTIONS));
    case 'cluster':
      return new Cluster([...target.nodes], {
        enableOfflineQueue: false,
        clusterRetryStrategy: retryDelay,
        redisOptions: { ...SERVER_OPTIONS, ...credentials(target) },
      });
  }
}

export function connectRedis(target: RedisTarget, log: Logger, now: () => number = Date.now): RedisLink {
  const client = createClient(target);
  let down = false;
  let closing = false;
  let skipUntil = 0;
  const listeners: (() => void)[] = [];
  const subscriptions: { close(): void }[] = [];

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
    subscribe: (channel, handlers) => {
      if (!closing) subscriptions.push(keepSubscribed(channel, handlers, (failures) => createSubscriber(target, client, channel, failures), log));
    },
    close: async () => {
      closing = true;
      for (const subscription of subscriptions) subscription.close();
      client.disconnect();
    },
  };
}
