import type { ClientRateLimitInfo, Options, Store } from 'express-rate-limit';

/**
 * Fixed-window counters in process memory, at most `maxKeys` of them: when full, the oldest
 * window is dropped first. express-rate-limit's MemoryStore has no bound, so a flood of distinct
 * keys (many IPs, invented usernames) could grow it without limit while Redis is away; here the
 * memory is bounded (about 300 bytes a key) at the price of forgetting the oldest counters first.
 */
export class BoundedMemoryStore implements Store {
  readonly localKeys = true;
  private windowMs = 60_000;
  private readonly counters = new Map<string, { hits: number; resetTime: Date }>();

  constructor(private readonly maxKeys: number) {}

  init(options: Options): void {
    this.windowMs = options.windowMs;
  }

  private current(key: string): { hits: number; resetTime: Date } | undefined {
    const entry = this.counters.get(key);
    if (entry && entry.resetTime.getTime() <= Date.now()) {
      this.counters.delete(key);
      return undefined;
    }
    return entry;
  }

  get(key: string): ClientRateLimitInfo | undefined {
    const entry = this.current(key);
    return entry && { totalHits: entry.hits, resetTime: entry.resetTime };
  }

  increment(key: string): ClientRateLimitInfo {
    const entry = this.current(key) ?? this.insert(key, { hits: 0, resetTime: new Date(Date.now() + this.windowMs) });
    entry.hits += 1;
    return { totalHits: entry.hits, resetTime: entry.resetTime };
  }

  /** Takes a count kept elsewhere (Redis) as this key's count, within the same bound; returns it. */
  remember(key: string, info: ClientRateLimitInfo): ClientRateLimitInfo {
    const resetTime = info.resetTime ?? new Date(Date.now() + this.windowMs);
    const entry = this.current(key);
    if (entry === undefined) this.insert(key, { hits: info.totalHits, resetTime });
    else Object.assign(entry, { hits: info.totalHits, resetTime });
    return info;
  }

  private insert(key: string, entry: { hits: number; resetTime: Date }): { hits: number; resetTime: Date } {
    while (this.counters.size >= this.maxKeys) this.counters.delete(this.counters.keys().next().value as string);
    this.counters.set(key, entry);
    return entry;
  }

  decrement(key: string): void {
    const entry = this.current(key);
    if (entry && entry.hits > 0) entry.hits -= 1;
  }

  resetKey(key: string): void {
    this.counters.delete(key);
  }

  get size(): number {
    return this.counters.size;
  }
}
