import { inRedisOrMemory } from './failover-store.js';
import type { RedisLink } from './redis.js';

/** The most blocks one process keeps (about 100 bytes each): beyond, client_auth reads Redis per request until expired ones make room. */
export const MAX_BLOCKS = 100_000;
/** After a failed read of the set, or while the view is full, the next try. */
const RETRY_MS = 1_000;
const FULL_RETRY_MS = 10_000;

/**
 * Adds one block to the shared set and tells every replica, atomically: the end of the block is
 * Redis's clock plus what is left of the window (ARGV[3], ms), so that no replica's clock is
 * compared with another's. Trims what has ended, and keeps the set no longer than its last block.
 * KEYS[1]: the set; ARGV: the channel, the source's key, the ms left.
 */
const BLOCK_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[3])
local ends = now + ms
if ends > tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]) or '0') then
  redis.call('ZADD', KEYS[1], string.format('%.0f', ends), ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
redis.call('PUBLISH', ARGV[1], ARGV[3] .. ' ' .. ARGV[2])
return 1
`;

/** The blocks that have not ended, with Redis's clock: KEYS[1] the set, ARGV[1] how many at most. */
const READ_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
return { string.format('%.0f', now), found }
`;

/** A message: `<ms left> <source key>`. Anything else is ignored. */
const MESSAGE = /^([1-9]\d{0,9}) ([\x21-\x7e]{0,100})$/;
const SOURCE_KEY = /^[\x21-\x7e]{0,100}$/;

/**
 * The sources the client_auth layer blocks now, as this process knows them (issue 17): a block
 * made anywhere reaches every replica through Redis pub/sub, so that a client authentication that
 * succeeds costs no Redis round trip. The view is complete only while this process is subscribed,
 * has read the shared set since it (re)subscribed, holds no more than MAX_BLOCKS, and Redis
 * answers; otherwise the caller reads the failure count per request, as without the view.
 */
export interface BlockedSources {
  /** True while `blockedUntil` knows every block of every replica. */
  isComplete(): boolean;
  /** When the block on `key` ends (ms, this process's clock), if it is blocked now. */
  blockedUntil(key: string): number | undefined;
  /** Blocks `key` until `until` here at once and, when `shared` (the count is Redis's), on every replica. */
  block(key: string, until: number, shared: boolean): Promise<void>;
  /** Stops retrying reads (the subscription itself closes with the Redis link). */
  close(): void;
}

/** `key`: the set of blocks in Redis (`${prefix}client_auth:blocked`), and the channel they are announced on. */
export function watchBlockedSources(redis: RedisLink, key: string, now: () => number = Date.now): BlockedSources {
  const view = new Map<string, number>();
  let subscribed = false;
  let synced = false;
  let syncing = false;
  let stopped = false;
  // Bumped whenever the view stops being complete: a read begun before that cannot complete it.
  let generation = 0;
  let retry: NodeJS.Timeout | undefined;
  let lastPrune = 0;

  const unsync = () => {
    synced = false;
    generation += 1;
  };

  const prune = () => {
    const at = now();
    if (at - lastPrune < 1_000) return; // a full view under attack is not scanned on every add
    lastPrune = at;
    for (const [source, until] of view) if (until <= at) view.delete(source);
  };

  /** False when the view is full: it is then incomplete until a later read finds room. */
  const add = (source: string, until: number): boolean => {
    const known = view.get(source);
    if (known !== undefined) {
      if (until > known) view.set(source, until);
      return true;
    }
    if (view.size >= MAX_BLOCKS) prune();
    if (view.size >= MAX_BLOCKS) {
      if (synced) {
        unsync();
        later(FULL_RETRY_MS);
      }
      return false;
    }
    view.set(source, until);
    return true;
  };

  /** Takes in READ_SCRIPT's reply; false when it did not all fit (or was not what the script returns). */
  const load = (reply: unknown): boolean => {
    if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1])) return false;
    const [redisNow, found] = reply as [unknown, unknown[]];
    const base = Number(redisNow);
    if (!Number.isFinite(base) || found.length > 2 * MAX_BLOCKS) return false;
    const at = now();
    let complete = true;
    for (let i = 0; i + 1 < found.length; i += 2) {
      const source = String(found[i]);
      const left = Number(found[i + 1]) - base;
      if (!SOURCE_KEY.test(source) || !Number.isFinite(left)) continue;
      if (left > 0 && !add(source, at + left)) complete = false;
    }
    return complete;
  };

  const later = (ms: number) => {
    if (stopped || retry !== undefined) return;
    retry = setTimeout(() => void sync(), ms);
    retry.unref();
  };
  const syncSoon = () => {
    clearTimeout(retry);
    retry = undefined;
    later(0);
  };

  async function sync(): Promise<void> {
    retry = undefined;
    if (stopped || syncing || synced || !subscribed) return;
    if (!redis.isUsable()) return later(RETRY_MS);
    syncing = true;
    const started = generation;
    let delay = RETRY_MS;
    try {
      const reply = await redis.call('EVAL', READ_SCRIPT, '1', key, String(MAX_BLOCKS + 1));
      redis.reportSuccess();
      if (load(reply) && started === generation && subscribed) synced = true;
      else if (started === generation) delay = FULL_RETRY_MS;
      else delay = 0; // resubscribed meanwhile: read again, now
    } catch (error) {
      redis.reportFailure(error);
    } finally {
      syncing = false;
    }
    if (!synced) later(delay);
  }

  redis.subscribe(key, {
    what: 'client_auth blocks',
    onSubscribed() {
      subscribed = true;
      unsync();
      syncSoon();
    },
    onLost() {
      subscribed = false;
      unsync();
    },
    onMessage(message) {
      const parsed = MESSAGE.exec(message);
      if (parsed !== null) add(parsed[2]!, now() + Number(parsed[1]));
    },
  });
  // Redis back after an outage: the view is read again at once rather than at the next retry.
  redis.onReady(() => {
    if (subscribed && !synced) syncSoon();
  });

  return {
    isComplete() {
      if (!subscribed || !synced) return false;
      // Commands fail while the subscription looks alive (a half-open connection, a hung Redis):
      // what it says may be stale. Per request, as before, until Redis answers and the set is read again.
      if (!redis.isUsable()) {
        unsync();
        later(RETRY_MS);
        return false;
      }
      return true;
    },
    blockedUntil(source) {
      const until = view.get(source);
      if (until === undefined) return undefined;
      if (until > now()) return until;
      view.delete(source);
      return undefined;
    },
    async block(source, until, shared) {
      add(source, until);
      const ms = Math.ceil(until - now());
      if (!shared || ms <= 0) return;
      await inRedisOrMemory(
        redis,
        () => redis.call('EVAL', BLOCK_SCRIPT, '1', key, key, source, String(ms)),
        () => undefined,
      );
    },
    close() {
      stopped = true;
      clearTimeout(retry);
    },
  };
}
