import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** After a failed command, Redis is skipped for this long (or until it reconnects), so requests do not each wait on it. */
const COOLDOWN_MS = 5_000;

/**
 * The one Redis connection of a process, for rate-limit counters only (DESIGN.md: losing Redis
 * loses no data). No request ever waits on a dead Redis: commands are not queued while it is
 * disconnected and time out after 250 ms; ioredis keeps reconnecting in the background.
 */
export interface RedisLink {
  readonly client: Redis;
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

export function connectRedis(url: string, log: Logger, now: () => number = Date.now): RedisLink {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 250,
    connectTimeout: 1_000,
    retryStrategy: (attempt) => Math.min(attempt * 250, 2_000),
    // Never let a Redis problem surface as a crash or an unhandled rejection.
    reconnectOnError: () => false,
  });
  let down = false;
  let closing = false;
  let skipUntil = 0;
  const listeners: (() => void)[] = [];

  const markDown = (error: unknown) => {
    skipUntil = now() + COOLDOWN_MS;
    if (down || closing) return;
    down = true;
    log.warn({ err: error }, 'redis is unreachable: rate limits continue per process, in memory, until it is back');
  };
  const markUp = () => {
    skipUntil = 0;
    if (down) log.info('redis is back: rate limits are shared again');
    down = false;
  };
  client.on('error', markDown);
  client.on('close', () => markDown(new Error('the connection to redis closed')));
  client.on('ready', () => {
    markUp();
    for (const listener of listeners) listener();
  });

  return {
    client,
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
