import type { RedisOptions } from 'ioredis';
import type { RedisTarget } from './redis-target.js';

// What the connections of src/limits/redis.ts and src/limits/redis-subscription.ts are made with.

export const retryDelay = (attempt: number) => Math.min(attempt * 250, 2_000);

/** What every connection to a Redis server gets, whatever the topology. */
export const SERVER_OPTIONS = {
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

/** The sentinels, the master's name and the credentials, over `options`. */
export function sentinelOptions(target: Extract<RedisTarget, { topology: 'sentinel' }>, options: RedisOptions): RedisOptions {
  return {
    ...options,
    sentinels: [...target.sentinels],
    name: target.master,
    ...credentials(target),
    ...(target.sentinelPassword === undefined ? {} : { sentinelPassword: target.sentinelPassword }),
    sentinelRetryStrategy: retryDelay,
    // Subscribes to the sentinels' +switch-master: a failover is followed at once, even when
    // the old primary lives on (without it, only once that connection breaks).
    failoverDetector: true,
  };
}

export function credentials(target: { readonly username: string | undefined; readonly password: string | undefined }): RedisOptions {
  return {
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password }),
  };
}
