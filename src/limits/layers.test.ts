import { afterEach, describe, expect, it, vi } from 'vitest';
import { secondsUntil, tooManyRequests } from './layers.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('tooManyRequests', () => {
  it('is a 429 temporarily_unavailable whose Retry-After is whole seconds, rounded up, and never less than one', () => {
    const error = tooManyRequests(59);
    expect({ status: error.status, body: error.toJSON(), headers: error.headers }).toEqual({
      status: 429,
      body: { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' },
      headers: { 'Retry-After': '59' },
    });
    expect([1.2, 0.2, 0, -3].map((seconds) => tooManyRequests(seconds).headers['Retry-After'])).toEqual(['2', '1', '1', '1']);
  });
});

describe('secondsUntil', () => {
  it('is the time left until the window ends, or the whole window when the store did not say', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    expect(secondsUntil(new Date('2030-01-01T00:00:30.500Z'), 60)).toBe(30.5);
    expect(secondsUntil(undefined, 60)).toBe(60);
  });
});
