import type { ClientRateLimitInfo, Options, Store } from 'express-rate-limit';
import { RedisStore } from 'rate-limit-redis';
import { BoundedMemoryStore } from './bounded-memory-store.js';
import type { RedisLink } from './redis.js';

/** Counters one layer may keep in memory (about 300 bytes each): the bound while Redis is away. */
export const MEMORY_KEYS_PER_LAYER = 50_000;

/**
 * A rate-limit store that counts in Redis while Redis answers, and in this process's memory while
 * it does not: never failing open, never failing the request. Every count Redis returns is copied
 * into memory, so a fall-back (Redis down, or one command timing out under load) goes on from the
 * last shared count rather than from zero. When Redis is back, counting moves back to it without a
 * restart (what was counted in memory meanwhile stays local to this process). Without Redis at all
 * (the embedded default) it is simply the memory store.
 */
export class FailoverStore implements Store {
  readonly localKeys = false;
  private readonly memory = new BoundedMemoryStore(MEMORY_KEYS_PER_LAYER);
  private readonly redisStore: RedisStore | undefined;
  private options: Options | undefined;

  constructor(
    private readonly redis: RedisLink | undefined,
    readonly prefix: string,
  ) {
    if (redis !== undefined) {
      this.redisStore = new RedisStore({
        prefix,
        sendCommand: (command: string, ...args: string[]) => redis.call(command, ...args) as never,
      });
      // Its Lua scripts must be (re)loaded whenever Redis comes back: it may have restarted empty.
      redis.onReady(() => void this.loadScripts());
    }
  }

  init(options: Options): void {
    this.options = options;
    this.memory.init(options);
    void this.loadScripts();
  }

  private async loadScripts(): Promise<void> {
    if (this.redisStore === undefined || this.options === undefined || !this.redis?.isUsable()) return;
    await this.redisStore.init(this.options).catch((error: unknown) => this.redis?.reportFailure(error));
  }

  private async either<T>(inRedis: (store: RedisStore) => Promise<T>, inMemory: (store: BoundedMemoryStore) => T): Promise<T> {
    const store = this.redisStore;
    return inRedisOrMemory(
      store && this.redis,
      () => inRedis(store!),
      () => inMemory(this.memory),
    );
  }

  async increment(key: string) {
    return this.either(
      async (store) => this.memory.remember(key, await store.increment(key)),
      (store) => store.increment(key),
    );
  }

  /** As increment, and whether the count is the one Redis keeps for every replica (else this process's own). */
  async incrementShared(key: string): Promise<ClientRateLimitInfo & { shared: boolean }> {
    let shared = false;
    const info = await this.either(
      async (store) => {
        const counted = this.memory.remember(key, await store.increment(key));
        shared = true;
        return counted;
      },
      (store) => store.increment(key),
    );
    return { ...info, shared };
  }

  async decrement(key: string) {
    this.memory.decrement(key);
    return this.either(
      (store) => store.decrement(key),
      () => undefined,
    );
  }

  async resetKey(key: string) {
    this.memory.resetKey(key);
    return this.either(
      (store) => store.resetKey(key),
      () => undefined,
    );
  }

  /**
   * Counts `key` once in a window that starts now, whatever it held: one command (SET with PX, the
   * form rate-limit-redis keeps a count in), where a reset and an increment would be two round trips.
   */
  async restart(key: string) {
    this.memory.resetKey(key);
    const counted = this.memory.increment(key);
    return this.either(
      async () => {
        await this.redis!.call('SET', `${this.prefix}${key}`, '1', 'PX', String(this.options!.windowMs));
        return counted;
      },
      () => counted,
    );
  }

  async get(key: string) {
    return this.either(
      async (store) => {
        const info = await store.get(key);
        // A key Redis does not have comes back as NaN hits (ioredis reads a nil as null, not false): no count.
        if (info === undefined || !Number.isFinite(info.totalHits)) {
          this.memory.resetKey(key);
          return undefined;
        }
        return this.memory.remember(key, info);
      },
      (store) => store.get(key),
    );
  }

  shutdown(): void {
    // Nothing to stop: the memory store keeps no timers.
  }
}

/**
 * Runs `inRedis` while Redis is usable and `inMemory` otherwise, or when Redis fails this once:
 * never failing the request, and telling the link what happened so that a dead or hung Redis is
 * skipped by the next requests (src/limits/redis.ts).
 */
export async function inRedisOrMemory<T>(redis: RedisLink | undefined, inRedis: () => Promise<T>, inMemory: () => T): Promise<T> {
  if (redis?.isUsable()) {
    try {
      const result = await inRedis();
      redis.reportSuccess();
      return result;
    } catch (error) {
      redis.reportFailure(error);
    }
  }
  return inMemory();
}
