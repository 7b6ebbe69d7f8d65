import type { Clock } from '../../src/clock.js';

/** The only thing tests fake: time. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
}

/**
 * How far the default fake clock stands from the real one. Far on purpose: a test that lets the
 * fake clock meet a real one (jose's default `currentDate`, PostgreSQL's now(), a Redis TTL, a
 * fixture dated by Date.now()) fails on the day it is written, not weeks later when a fixed
 * start date has drifted out of some window. scripts/test-any-date.sh moves the real clock too.
 */
export const FAKE_CLOCK_OFFSET_MS = -1_000 * 86_400_000;

/** A clock that moves only when the test moves it; by default 1,000 days before the real time. */
export function createFakeClock(start = Date.now() + FAKE_CLOCK_OFFSET_MS): FakeClock {
  let now = start;
  return {
    now: () => now,
    advance: (ms) => {
      now += ms;
    },
    set: (ms) => {
      now = ms;
    },
  };
}
