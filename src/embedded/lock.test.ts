import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { controlSocketPath } from './control-socket.js';
import { DataDirLockedError, lockDataDir } from './lock.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lockFile = () => join(dir, 'tessera.lock');

describe('lockDataDir', () => {
  it('takes a free directory, records pid and start time, and releases it', async () => {
    const lock = await lockDataDir(dir);
    expect(await readFile(lockFile(), 'utf8')).toMatch(new RegExp(`^${process.pid} \\d+\\n$`));
    await lock.release();
    await expect(readFile(lockFile(), 'utf8')).rejects.toThrow();
  });

  it('refuses a directory held by a live process', async () => {
    // The parent of this test process is alive, and its start time is what /proc says.
    const stat = await readFile(`/proc/${process.ppid}/stat`, 'utf8');
    const started = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    await writeFile(lockFile(), `${process.ppid} ${started}\n`);
    await expect(lockDataDir(dir)).rejects.toEqual(new DataDirLockedError(process.ppid));
  });

  it.each([
    ['a process that has ended', '999999999 12345'],
    ['a reused pid (pid 1 after a container restart)', '1 1'],
    ['our own pid from an earlier life', `${process.pid} 1`],
    ['a file that is not a lock', 'garbage'],
  ])('takes over a stale lock: %s', async (_name, content) => {
    await writeFile(lockFile(), `${content}\n`);
    const lock = await lockDataDir(dir);
    expect(await readFile(lockFile(), 'utf8')).toMatch(new RegExp(`^${process.pid} `));
    await lock.release();
  });
});

describe('controlSocketPath', () => {
  it('refuses a DATA_DIR too long for a Unix socket, instead of letting the kernel truncate it', () => {
    expect(() => controlSocketPath(`/tmp/${'x'.repeat(120)}`)).toThrow(/DATA_DIR is too long for its control socket/);
    expect(controlSocketPath('/tmp/short')).toBe('/tmp/short/control.sock');
  });
});
