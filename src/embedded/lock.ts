import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * PGlite lets exactly one process open a data directory; a second opener would corrupt it. This
 * lock file (holding the owner's pid) makes that a clear error instead. A lock whose process is
 * gone is stale and taken over.
 */
export class DataDirLockedError extends Error {
  constructor(readonly pid: number) {
    super(`the embedded database is in use by process ${pid}`);
    this.name = 'DataDirLockedError';
  }
}

export interface DataDirLock {
  release(): Promise<void>;
}

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, 'tessera.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await open(path, 'wx', 0o600);
      await file.writeFile(`${process.pid}\n`);
      await file.close();
      return {
        async release() {
          const owner = await readOwner(path);
          if (owner === process.pid) await unlink(path).catch(() => undefined);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = await readOwner(path);
      if (owner !== undefined && isAlive(owner)) throw new DataDirLockedError(owner);
      await unlink(path).catch(() => undefined); // stale: its process has ended
    }
  }
  throw new Error(`could not take the lock ${path}`);
}

async function readOwner(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
