import { inRedisOrMemory, MEMORY_KEYS_PER_LAYER } from './failover-store.js';
import type { RedisLink } from './redis.js';

/**
 * Adds a slot (scored by when it lapses, on Redis's own clock: one clock for every replica),
 * drops the slots that have lapsed, and returns how many are held. A slot lapses on its own, so a
 * process that dies mid-request holds it for `ttl` at most.
 */
const RESERVE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])`;

/**
 * Slots for work in progress, per key: what a check-then-count limit needs to stay exact under
 * concurrency. A request takes a slot before it reads the count and gives it back after it has
 * counted, so two concurrent requests always see each other (src/limits/login-attempts.ts).
 * Slots are kept in Redis, shared by all replicas, and also in this process's memory, so that
 * while Redis is away the process still sees its own.
 */
export class InFlightSlots {
  private readonly memory = new Map<string, Map<string, number>>();

  constructor(
    private readonly redis: RedisLink | undefined,
    private readonly prefix: string,
    private readonly ttlMs: number,
  ) {}

  /** Takes slot `id` for `key`; returns how many slots `key` holds now, this one included. */
  async reserve(key: string, id: string): Promise<number> {
    const held = this.reserveInMemory(key, id);
    return inRedisOrMemory(
      this.redis,
      async () => Number(await this.redis!.client.eval(RESERVE, 1, `${this.prefix}${key}`, id, String(this.ttlMs))),
      () => held,
    );
  }

  async release(key: string, id: string): Promise<void> {
    const slots = this.memory.get(key);
    slots?.delete(id);
    if (slots?.size === 0) this.memory.delete(key);
    await inRedisOrMemory(
      this.redis,
      async () => void (await this.redis!.client.zrem(`${this.prefix}${key}`, id)),
      () => undefined,
    );
  }

  private reserveInMemory(key: string, id: string): number {
    const now = Date.now();
    let slots = this.memory.get(key);
    if (slots === undefined) {
      // Bounded like the counters: the oldest key goes first.
      while (this.memory.size >= MEMORY_KEYS_PER_LAYER) this.memory.delete(this.memory.keys().next().value as string);
      slots = new Map();
      this.memory.set(key, slots);
    }
    for (const [slot, lapses] of slots) if (lapses <= now) slots.delete(slot);
    slots.set(id, now + this.ttlMs);
    return slots.size;
  }
}
