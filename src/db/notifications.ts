import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';

/** What a LISTEN subscription tells its owner. */
export interface NotificationHandlers {
  /** LISTEN is in place and proven (first time, or again after a loss): from now on nothing is missed. */
  readonly listening: () => void;
  readonly notification: (payload: string) => void;
  /** Notifications may be missed from now until `listening` is called again. */
  readonly lost: () => void;
}

/** Subscribes to a PostgreSQL notification channel for as long as the database handle is open. */
export type Listen = (channel: string, handlers: NotificationHandlers) => void;

/** A channel name is an SQL identifier in LISTEN: only plain lower-case names are used. */
const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

export function checkChannel(channel: string): string {
  if (!CHANNEL.test(channel)) throw new Error(`not a channel name: ${channel}`);
  return channel;
}

/** How often a live subscription proves itself, and how long the proof may take. */
const PROBE_INTERVAL_MS = 5_000;
const PROBE_TIMEOUT_MS = 2_000;
const RECONNECT_DELAY_MS = 1_000;
/** Payloads that start so are this module's own (client ids, the one payload in use, have no colon). */
const PROBE_PREFIX = 'probe:';

/**
 * LISTEN on PostgreSQL, on a connection of its own (a pooled one could be handed to a request
 * mid-notification). A connection can stop delivering without an error (a half-open TCP
 * connection, a pooler in transaction mode that does not carry LISTEN), so a subscription is only
 * reported `listening` once a notification it sent itself has come back, and it sends one every
 * PROBE_INTERVAL_MS: one that does not return within PROBE_TIMEOUT_MS ends the connection, and a
 * new one is made. Every end is reported as `lost`.
 */
export function listenOnPostgres(url: string, log: Logger): { listen: Listen; close(): Promise<void> } {
  const subscriptions = new Set<{ close(): Promise<void> }>();
  return {
    listen(channel, handlers) {
      subscriptions.add(subscribe(url, checkChannel(channel), handlers, log));
    },
    async close() {
      await Promise.all([...subscriptions].map((subscription) => subscription.close()));
    },
  };
}

function subscribe(url: string, channel: string, handlers: NotificationHandlers, log: Logger): { close(): Promise<void> } {
  let closed = false;
  let current: pg.Client | undefined;
  let live = false;
  /** An outage (or a channel that never worked) is logged once, not at every reconnection attempt. */
  let logged = false;
  let reconnect: NodeJS.Timeout | undefined;
  let probe: NodeJS.Timeout | undefined;
  let awaitedProbe: { payload: string; arrived: () => void } | undefined;

  const end = (client: pg.Client, reason: unknown) => {
    if (client !== current) return;
    current = undefined;
    clearTimeout(probe);
    awaitedProbe = undefined;
    const wasLive = live;
    live = false;
    if (wasLive) handlers.lost();
    if (!logged) {
      logged = true;
      const message = wasLive ? 'database notifications lost' : 'database notifications are not available';
      log.warn({ err: reason, channel }, `${message}: cached values are not used until they are back`);
    }
    client.end().catch(() => undefined);
    if (!closed) reconnect = setTimeout(connect, RECONNECT_DELAY_MS).unref();
  };

  /** Sends a probe on the channel and resolves once it comes back; ends the connection if it does not. */
  const prove = async (client: pg.Client): Promise<boolean> => {
    const payload = `${PROBE_PREFIX}${randomUUID()}`;
    const returned = new Promise<boolean>((resolve) => {
      awaitedProbe = { payload, arrived: () => resolve(true) };
      setTimeout(() => resolve(false), PROBE_TIMEOUT_MS).unref();
    });
    // Not awaited: on a stalled connection the query would never end. The timeout is the answer.
    client.query('select pg_notify($1, $2)', [channel, payload]).catch((error: unknown) => end(client, error));
    if (await returned) return true;
    end(client, new Error(`a notification sent on ${channel} did not come back within ${PROBE_TIMEOUT_MS} ms`));
    return false;
  };

  const keepProving = (client: pg.Client) => {
    probe = setTimeout(() => {
      void prove(client).then((ok) => ok && client === current && keepProving(client));
    }, PROBE_INTERVAL_MS).unref();
  };

  const connect = async () => {
    if (closed) return;
    // A query that hangs (a connection stalled right after it opened) fails, and the connection with it.
    const client = new pg.Client({
      connectionString: url,
      application_name: 'tessera-listen',
      keepAlive: true,
      connectionTimeoutMillis: 2_000,
      query_timeout: PROBE_TIMEOUT_MS,
    });
    current = client;
    client.on('error', (error) => end(client, error));
    client.on('end', () => end(client, new Error('the connection ended')));
    client.on('notification', (message) => {
      if (message.channel !== channel || message.payload === undefined) return;
      if (message.payload.startsWith(PROBE_PREFIX)) {
        if (awaitedProbe?.payload === message.payload) awaitedProbe.arrived();
        return;
      }
      handlers.notification(message.payload);
    });
    try {
      await client.connect();
      await client.query(`listen ${channel}`);
    } catch (error) {
      return end(client, error);
    }
    if (!(await prove(client)) || closed) return;
    live = true;
    logged = false;
    handlers.listening();
    log.info({ channel }, 'database notifications are live');
    keepProving(client);
  };

  void connect();
  return {
    async close() {
      closed = true;
      clearTimeout(reconnect);
      clearTimeout(probe);
      const client = current;
      current = undefined;
      await client?.end().catch(() => undefined);
    },
  };
}
