/** Runs at most `max` tasks at once; up to `queueLimit` more wait their turn; beyond that, `overflow()` is thrown. */
export interface ConcurrencyLimit {
  run<T>(task: () => Promise<T>): Promise<T>;
  readonly active: number;
  readonly queued: number;
  /** The most that ever ran at once (for tests and metrics). */
  readonly peak: number;
}

export function createConcurrencyLimit(max: number, queueLimit: number, overflow: () => Error): ConcurrencyLimit {
  let active = 0;
  let peak = 0;
  const waiting: (() => void)[] = [];

  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };

  return {
    async run(task) {
      if (active < max) {
        active++;
      } else {
        if (waiting.length >= queueLimit) throw overflow();
        // The slot is handed over directly by release(), so `active` does not change here.
        await new Promise<void>((resolve) => waiting.push(resolve));
      }
      peak = Math.max(peak, active);
      try {
        return await task();
      } finally {
        release();
      }
    },
    get active() {
      return active;
    },
    get queued() {
      return waiting.length;
    },
    get peak() {
      return peak;
    },
  };
}
