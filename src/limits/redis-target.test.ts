import { describe, expect, it } from 'vitest';
import { keySlot } from './redis-target.js';

describe('keySlot', () => {
  it('gives the slots Redis gives: the CLUSTER KEYSLOT examples of the Redis documentation', () => {
    expect(keySlot('somekey')).toBe(11058);
    expect(keySlot('foo{hash_tag}')).toBe(2515);
    expect(keySlot('bar{hash_tag}')).toBe(2515);
  });

  it('hashes the whole key when its braces hold nothing, and its UTF-8 bytes (values from a Redis 7 cluster)', () => {
    expect(keySlot('foo{}bar')).toBe(14292);
    expect(keySlot('é')).toBe(10180);
    expect(keySlot('tessera:client_auth:blocked')).toBe(3021);
  });
});
