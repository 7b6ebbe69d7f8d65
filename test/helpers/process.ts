import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { watchLogOutput } from './logs.js';

/** The built CLI, as `npx tessera` and the container run it. */
export const MAIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
export const PROCESS_TIMEOUT_MS = 60_000;

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Spawned {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout(): string;
  stderr(): string;
}

/** Every process the calling test file started; `stopAll` kills what is left of them, and only them. */
const children = new Set<ChildProcess>();

/**
 * libfaketime's variables (scripts/test-any-date.sh moves the test runner's clock with them). A
 * Tessera the test starts is part of what is tested and runs on the test's clock; a server it
 * starts as infrastructure (Redis) runs on the machine's, as the shared PostgreSQL and Redis do.
 */
const FAKETIME_VARIABLES = /^(LD_PRELOAD|FAKETIME.*|DONT_FAKE_MONOTONIC|NO_FAKE_STAT)$/;

export function testClockEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => FAKETIME_VARIABLES.test(name)));
}

export function machineClockEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !FAKETIME_VARIABLES.test(name)));
}

/**
 * `tessera ...args` as a child process, its output collected (and checked for secrets,
 * test/logs.setup.ts). `cwd`: where it runs, this process's working directory by default.
 */
export function startTessera(args: readonly string[], env: NodeJS.ProcessEnv, stdin?: string, cwd?: string): Spawned {
  // No load balancer waits on a test's server: it stops at once on SIGTERM unless the test sets a
  // SHUTDOWN_DELAY (test/drain.test.ts does).
  const child = spawn(process.execPath, [MAIN, ...args], { env: { SHUTDOWN_DELAY: '0s', ...env, ...testClockEnv() }, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // serve logs to stdout; other commands log to stderr, and their stdout is output (a generated secret, once).
  watchLogOutput(`tessera ${args.join(' ')}`, () => (args[0] === 'serve' ? stdout + stderr : stderr));
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  // Always end stdin, so a command that reads it sees EOF instead of waiting forever.
  child.stdin!.on('error', () => undefined); // EPIPE when the process exits without reading it
  child.stdin!.end(stdin);
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/**
 * Waits until the process's stdout and stderr have ended: `exited` resolves on 'exit', when the
 * last lines it wrote may still be on their way through the pipes.
 */
export async function waitForOutput(spawned: Spawned): Promise<void> {
  await Promise.all(
    [spawned.child.stdout!, spawned.child.stderr!].map((stream) =>
      stream.readableEnded || stream.destroyed ? undefined : new Promise((resolve) => stream.once('close', resolve)),
    ),
  );
}

/** Kills the processes this file started that are still running, and waits for them (for afterAll). */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...children].map((child) => {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      return gone;
    }),
  );
}

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A one-shot `tessera ...` to completion. */
export async function runTessera(args: readonly string[], env: NodeJS.ProcessEnv, stdin?: string, cwd?: string): Promise<Run> {
  const spawned = startTessera(args, env, stdin, cwd);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`tessera ${args.join(' ')} did not finish:\n${spawned.stderr()}`)), PROCESS_TIMEOUT_MS);
  });
  try {
    const { code } = await Promise.race([spawned.exited, timeout]);
    return { code, stdout: spawned.stdout(), stderr: spawned.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

/** The lowest port freePort() picks: above the well-known and registered ports local services use. */
const FIRST_TEST_PORT = 10_000;

/**
 * A loopback port nothing listens on now, for a process the test is about to start. It comes from
 * below the kernel's ephemeral range: a port from listen(0) is one the kernel hands out again to
 * the next listen(0), and supertest listens on one for every request, so in a busy suite another
 * test's server took "our" port while the process meant for it was still starting (an embedded
 * serve initialises PGlite for seconds), and the test talked to that server instead.
 */
export async function freePort(): Promise<number> {
  const ephemeralStart = await firstEphemeralPort();
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = FIRST_TEST_PORT + Math.floor(Math.random() * (ephemeralStart - FIRST_TEST_PORT));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port from ${FIRST_TEST_PORT} to ${ephemeralStart - 1}`);
}

/** Where Linux's ip_local_port_range starts (its default where there is none to read). */
async function firstEphemeralPort(): Promise<number> {
  const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768 60999');
  const start = Number(text.trim().split(/\s+/)[0]);
  if (!(start > FIRST_TEST_PORT + 1_000)) throw new Error(`the ephemeral port range starts at ${text.trim()}: too low to keep test ports out of it`);
  return start;
}

function canListen(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Polls `${url}/readyz` until it answers 200; fails at once if the process exits first. */
export async function waitUntilReady(spawned: Spawned, url: string): Promise<void> {
  const deadline = Date.now() + PROCESS_TIMEOUT_MS;
  let exit: Exit | undefined;
  void spawned.exited.then((value) => (exit = value));
  while (Date.now() < deadline) {
    if (exit !== undefined) throw new Error(`serve exited (${JSON.stringify(exit)}) before it was ready:\n${spawned.stderr()}${spawned.stdout()}`);
    const status = await fetch(`${url}/readyz`).then(
      (res) => res.status,
      () => 0,
    );
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`serve was not ready within ${PROCESS_TIMEOUT_MS} ms:\n${spawned.stderr()}${spawned.stdout()}`);
}

export interface Serving {
  readonly server: Spawned;
  /** `http://127.0.0.1:<port>`, also its ISSUER. */
  readonly base: string;
}

/** `tessera serve` on a free loopback port with `env` (and ISSUER naming that port), once it is ready. */
export async function serveOnFreePort(env: NodeJS.ProcessEnv): Promise<Serving> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = startTessera(['serve'], { ...env, PORT: String(port), ISSUER: base });
  await waitUntilReady(server, base);
  return { server, base };
}

/** The pids of a process's children (Linux /proc). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function logLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
