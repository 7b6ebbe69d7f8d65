// What every bench mode shares: starting and stopping a server process, its CPU and memory from
// /proc, driving it with autocannon, a throwaway database, a Redis key prefix, and the tables.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import autocannon from 'autocannon';
import { printPerf, startPerf } from './perf.mjs';
import pg from 'pg';
import { Redis } from 'ioredis';

export const FORM = 'application/x-www-form-urlencoded';
export const form = (params) => new URLSearchParams(params).toString();
export const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

export function withDatabase(url, name) {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** Creates the databases `names` on `adminUrl`; `drop()` removes them (and any connection left). */
export async function throwawayDatabases(adminUrl, names) {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  for (const name of names) await admin.query(`create database ${name}`);
  return {
    async drop() {
      for (const name of names) await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

export async function deleteRedisKeys(url, prefix) {
  const redis = new Redis(url);
  try {
    for await (const keys of redis.scanStream({ match: `${prefix}*`, count: 500 })) if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `node script args` and resolves once `ready()` is true; `startup` is spawn-to-ready.
 * Logs go to `logFile`, as a container runtime takes them: written at once, never waiting on a
 * reader (a pipe read by this busy process would make the server's synchronous log writes wait on it).
 */
export async function startProcess(script, argv, env, ready, { flags = [], logFile }) {
  const started = performance.now();
  const logs = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...flags, script, ...argv], { env, stdio: ['ignore', logs, 'pipe'] });
  closeSync(logs);
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode}:\n${stderr}`);
    if (await ready().catch(() => false)) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return {
    pid: child.pid,
    startup: (performance.now() - started) / 1000,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export const answers = (url, status = 200) => async () => (await fetch(url)).status === status;

/** RSS of a process and its children (cluster workers), in MB, now and at its peak (VmHWM, summed). */
export function memoryOf(pid) {
  const pids = [pid, ...childrenOf(pid)];
  let rss = 0;
  let peak = 0;
  for (const each of pids) {
    const status = readFileSync(`/proc/${each}/status`, 'utf8');
    rss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    peak += Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  }
  return { rssMb: round(rss / 1024), peakRssMb: round(peak / 1024), processes: pids.length };
}

function childrenOf(pid) {
  try {
    const direct = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    return direct.flatMap((child) => [child, ...childrenOf(child)]);
  } catch {
    return [];
  }
}

/**
 * One autocannon run of `seconds` at `connections` (the options may override them); per-connection
 * state goes through `setupClient`. Development aids: `threads` prints CPU by server thread, `perf`
 * (true or a label) the main thread's CPU by component (bench/perf.mjs; the server must run with
 * PERF_NODE_FLAGS).
 */
export async function load(options, pid, { connections, seconds, threads = false, perf = false }) {
  const sampler = perf ? startPerf(pid) : undefined;
  await sampler?.started;
  const cpuBefore = cpuSecondsOf(pid);
  const threadsBefore = threads ? threadTicks(pid) : undefined;
  const result = await autocannon({ connections, duration: seconds, ...options });
  const cpu = cpuSecondsOf(pid) - cpuBefore;
  if (sampler) printPerf(perf === true ? `pid ${pid}` : perf, await sampler.stop(result.requests.total));
  if (threadsBefore) {
    const after = threadTicks(pid);
    const byName = {};
    for (const [tid, { name, ticks }] of after) byName[name] = (byName[name] ?? 0) + ticks - (threadsBefore.get(tid)?.ticks ?? 0);
    console.log(`server CPU by thread (ms per request): ${Object.entries(byName).filter(([, t]) => t > 0).map(([n, t]) => `${n} ${round((t * 10) / result.requests.total, 3)}`).join(', ')}`);
  }
  return {
    requestsPerSecond: round(result.requests.total / result.duration),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
    requests: result.requests.total,
    // The server's own CPU (all its processes, every thread) per request: what a request costs,
    // whatever else shares the machine.
    serverCpuMsPerRequest: round((cpu * 1000) / Math.max(result.requests.total, 1), 3),
  };
}

/** A warm-up run (JIT, pools, caches), then the measured one; `scenario` makes fresh options for each. */
export async function measure(scenario, pid, { connections, seconds, warmup, threads = false, perf = false }) {
  await autocannon({ connections, ...scenario(), duration: warmup });
  return load(scenario(), pid, { connections, seconds, threads, perf });
}

/**
 * Waits (at most `limitMs`) until the server has used no more than a tick of CPU in 200 ms: the
 * requests autocannon abandoned when its last run stopped (a password grant's queued Argon2
 * verifies: up to a connection's worth each) are finished, and do not spill into the next window.
 * Returns the seconds waited.
 */
export async function settle(pid, limitMs = 5000) {
  const started = performance.now();
  let before = cpuSecondsOf(pid);
  while (performance.now() - started < limitMs) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const now = cpuSecondsOf(pid);
    if (now - before <= 0.01) break;
    before = now;
  }
  return (performance.now() - started) / 1000;
}

/** Development aid (--threads): CPU ticks of each thread of the server, by thread id. */
function threadTicks(pid) {
  const threads = new Map();
  for (const each of [pid, ...childrenOf(pid)]) {
    for (const tid of readdirSync(`/proc/${each}/task`)) {
      const fields = readFileSync(`/proc/${each}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
      const name = `${readFileSync(`/proc/${each}/task/${tid}/comm`, 'utf8').trim()}${tid === String(each) ? '(main)' : `/${tid}`}`;
      threads.set(`${each}/${tid}`, { name, ticks: Number(fields[11]) + Number(fields[12]) });
    }
  }
  return threads;
}

/** User + system CPU seconds of a process and its children (Linux /proc, clock ticks of 1/100 s). */
function cpuSecondsOf(pid) {
  let ticks = 0;
  for (const each of [pid, ...childrenOf(pid)]) {
    const fields = readFileSync(`/proc/${each}/stat`, 'utf8').split(') ')[1].split(' ');
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
  }
  return ticks / 100;
}

/** POSTs a form; the parsed JSON body, or an error naming the status. */
export async function postForm(url, authorization, params) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': FORM, ...(authorization ? { authorization } : {}) }, body: form(params) });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

export function table(rows) {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => String(row[column]).length)));
  for (const row of rows) console.log(row.map((cell, column) => String(cell).padEnd(widths[column])).join('  '));
}

export function commit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export function round(value, digits = 1) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
