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
  const self = { pid: process.pid, started: await startTime(process.pid) };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await open(path, 'wx', 0o600);
      await file.writeFile(`${self.pid} ${self.started ?? ''}\n`);
      await file.close();
      return {
        async release() {
          const owner = await readOwner(path);
          if (owner?.pid === self.pid) await unlink(path).catch(() => undefined);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = await readOwner(path);
      if (owner !== undefined && (await isLiveOwner(owner))) throw new DataDirLockedError(owner.pid);
      await unlink(path).catch(() => undefined); // stale: its process has ended
    }
  }
  throw new Error(`could not take the lock ${path}`);
}

interface Owner {
  readonly pid: number;
  readonly started: string | undefined;
}

async function readOwner(path: string): Promise<Owner | undefined> {
  const [pidText = '', started] = (await readFile(path, 'utf8').catch(() => '')).trim().split(' ');
  const pid = Number.parseInt(pidText, 10);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, started: started || undefined } : undefined;
}

/**
 * Whether the process that wrote the lock still runs. Pids are reused (in a container the server
 * is pid 1 at every start), so the lock also records the process's start time, and a live pid
 * with another start time, or our own pid, is a stale lock from an earlier life.
 */
async function isLiveOwner(owner: Owner): Promise<boolean> {
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const started = await startTime(owner.pid);
  return owner.started === undefined || started === undefined || started === owner.started;
}

/** The process's start time in clock ticks since boot (Linux /proc); undefined where there is no /proc. */
async function startTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // Field 22, counted after the parenthesised command name (which may itself contain spaces).
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}
