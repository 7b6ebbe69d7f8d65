import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Options } from 'express-rate-limit';
import { BoundedMemoryStore } from './bounded-memory-store.js';

const store = (maxKeys: number, windowMs = 1000) => {
  const s = new BoundedMemoryStore(maxKeys);
  s.init({ windowMs } as Options);
  return s;
};

afterEach(() => {
  vi.useRealTimers();
});

describe('BoundedMemoryStore', () => {
  it('counts per key in a fixed window and forgets the window when it ends', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const s = store(10);
    expect(s.increment('a').totalHits).toBe(1);
    expect(s.increment('a').totalHits).toBe(2);
    s.decrement('a');
    expect(s.get('a')?.totalHits).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(s.get('a')).toBeUndefined();
    expect(s.increment('a').totalHits).toBe(1);
  });

  it('never holds more than maxKeys counters: a flood of keys drops the oldest', () => {
    const s = store(1000, 60_000);
    for (let i = 0; i < 100_000; i++) s.increment(`ip-${i}`);
    expect(s.size).toBe(1000);
    expect(s.get('ip-0')).toBeUndefined();
    expect(s.get('ip-99999')?.totalHits).toBe(1);
  });

  it('resetKey clears one counter', () => {
    const s = store(10);
    s.increment('a');
    s.resetKey('a');
    expect(s.get('a')).toBeUndefined();
  });
});
