/** Waits `ms`, or less if `interrupt` resolves first: then its value (undefined after the whole wait). */
export async function waitUnless<T>(ms: number, interrupt?: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race(interrupt === undefined ? [elapsed] : [elapsed, interrupt]);
  } finally {
    clearTimeout(timer);
  }
}
