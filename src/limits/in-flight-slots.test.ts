import { afterEach, describe, expect, it, vi } from 'vitest';
import { MEMORY_KEYS_PER_LAYER } from './failover-store.js';
import { InFlightSlots } from './in-flight-slots.js';

// The memory side of the slots (no Redis): what a process still sees of its own verifications while
// Redis is away. The Redis side is tested through HTTP (test/security/i-limits.test.ts, I1).

afterEach(() => {
  vi.useRealTimers();
});

describe('InFlightSlots without Redis', () => {
  it('counts the slots each key holds, this one included, until they are given back', async () => {
    const slots = new InFlightSlots(undefined, 'test:', 30_000);
    expect(await slots.reserve('account', 'one')).toBe(1);
    expect(await slots.reserve('account', 'two')).toBe(2);
    expect(await slots.reserve('other', 'three')).toBe(1);
    await slots.release('account', 'one');
    expect(await slots.reserve('account', 'four')).toBe(2);
    await slots.release('account', 'two');
    await slots.release('account', 'four');
    expect(await slots.reserve('account', 'five')).toBe(1);
    // Giving back a slot twice, or one never taken, frees nothing else.
    await slots.release('account', 'five');
    await slots.release('account', 'five');
    await slots.release('nowhere', 'six');
    expect(await slots.reserve('other', 'seven')).toBe(2);
  });

  it('a slot lapses after its ttl, so a verification that never ended holds its key for ttl at most', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const slots = new InFlightSlots(undefined, 'test:', 1000);
    expect(await slots.reserve('account', 'stuck')).toBe(1);
    vi.advanceTimersByTime(999);
    expect(await slots.reserve('account', 'next')).toBe(2);
    vi.advanceTimersByTime(1);
    // 'stuck' lapses now; 'next' (taken 999 ms later) still holds.
    expect(await slots.reserve('account', 'later')).toBe(2);
  });

  it('keeps at most MEMORY_KEYS_PER_LAYER keys: a flood of keys drops the oldest first', async () => {
    const slots = new InFlightSlots(undefined, 'test:', 30_000);
    for (let i = 0; i < MEMORY_KEYS_PER_LAYER; i++) await slots.reserve(`key-${i}`, 'held');
    // Full: the next key drops key-0 (its slot with it), and no other.
    expect(await slots.reserve('one-more', 'held')).toBe(1);
    expect(await slots.reserve('key-1', 'another')).toBe(2);
    expect(await slots.reserve('key-0', 'another')).toBe(1);
  });
});
