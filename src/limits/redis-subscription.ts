import { type Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { credentials, retryDelay, sentinelOptions, SERVER_OPTIONS } from './redis-options.js';
import { keySlot, type RedisTarget } from './redis-target.js';

// A Redis pub/sub subscription that a process keeps for as long as it runs (RedisLink.subscribe,
// src/limits/redis.ts), on a connection of its own, whatever the topology.

export interface SubscriptionHandlers {
  /** What the subscription carries, for the log line of an outage (`client_auth blocks`). */
  readonly what: string;
  /** The subscription is (again) in place: from now on no message is missed. */
  onSubscribed(): void;
  /** It is gone, or may have missed a message: called at once, before any reconnection. */
  onLost(): void;
  onMessage(message: string): void;
}

/**
 * What a subscription's connection gets: no reconnection of its own (a new connection is made
 * instead, subscribed afresh, so that the caller knows when it may have missed messages), and
 * nothing resubscribed behind the caller's back.
 */
const SUBSCRIBER_OPTIONS = { ...SERVER_OPTIONS, retryStrategy: () => null, autoResubscribe: false, commandTimeout: 1_000 } satisfies RedisOptions;

/**
 * A new connection for a subscription to `channel`. On a cluster every node hears every PUBLISH,
 * but one made on another node reaches it over the cluster bus, tens of milliseconds later under
 * load: the first try is the node that holds the key named like the channel (where the scripts
 * that publish on it run, so it hears them at once), the next ones each node in turn.
 */
export function createSubscriber(target: RedisTarget, client: Redis | Cluster, channel: string, failures: number): Redis {
  switch (target.topology) {
    case 'single':
      return new Redis(target.url, SUBSCRIBER_OPTIONS);
    case 'sentinel':
      return new Redis(sentinelOptions(target, SUBSCRIBER_OPTIONS));
    case 'cluster': {
      const cluster = client as Cluster;
      const owner = cluster.slots[keySlot(channel)]?.[0];
      const known = cluster.nodes('all').map((node) => `${node.options.host}:${node.options.port}`);
      const nodes = [...(owner === undefined ? [] : [owner]), ...(known.length > 0 ? known : target.nodes.map((node) => `${node.host}:${node.port}`))];
      const node = nodes[failures % nodes.length]!;
      const colon = node.lastIndexOf(':');
      return new Redis({ ...SUBSCRIBER_OPTIONS, ...credentials(target), host: node.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(node.slice(colon + 1)) });
    }
  }
}

/** How often a subscription's connection is asked to answer a PING (a connection dropped silently, by a NAT, hears nothing). */
const SUBSCRIPTION_CHECK_MS = 15_000;

/**
 * One subscribed connection at a time: when it ends (or fails its PING), the handlers hear of it at
 * once, and a new one is made after the same back-off as the main connection's. One warning per
 * outage, one line when it is back.
 */
export function keepSubscribed(channel: string, handlers: SubscriptionHandlers, connect: (failures: number) => Redis, log: Logger): { close(): void } {
  let current: Redis | undefined;
  let closed = false;
  let failures = 0; // connections in a row that never subscribed
  let lost = false; // logged, and not yet back
  let retry: NodeJS.Timeout | undefined;

  const open = () => {
    retry = undefined;
    if (closed) return;
    const connection = connect(failures);
    current = connection;
    let check: NodeJS.Timeout | undefined;
    let subscribed = false;
    const isCurrent = () => connection === current && !closed;
    const drop = (error: unknown) => {
      if (!isCurrent()) return;
      handlers.onLost();
      if (!lost) {
        lost = true;
        log.warn({ err: error, channel }, `redis subscription down: ${handlers.what} are read from redis per request until it is back`);
      }
    };
    connection.on('error', drop);
    connection.on('close', () => drop(new Error('the subscription connection to redis closed')));
    connection.on('end', () => {
      clearInterval(check);
      if (!isCurrent()) return;
      current = undefined;
      // After a connection that worked, start again from the first choice; after one that never did, the next.
      if (!subscribed) failures += 1;
      retry = setTimeout(open, retryDelay(failures + 1));
      retry.unref();
    });
    connection.on('message', (from: string, message: string) => {
      if (from === channel && isCurrent()) handlers.onMessage(message);
    });
    connection.once('ready', () => {
      connection.subscribe(channel).then(
        () => {
          if (!isCurrent()) return;
          subscribed = true;
          failures = 0;
          if (lost) log.info({ channel }, `redis subscription back: ${handlers.what} are shared again`);
          lost = false;
          handlers.onSubscribed();
          check = setInterval(() => {
            connection.ping().catch((error: unknown) => {
              drop(error);
              connection.disconnect();
            });
          }, SUBSCRIPTION_CHECK_MS);
          check.unref();
        },
        (error: unknown) => {
          drop(error);
          connection.disconnect();
        },
      );
    });
  };
  open();
  return {
    close: () => {
      closed = true;
      clearTimeout(retry);
      current?.disconnect();
      current = undefined;
    },
  };
}
