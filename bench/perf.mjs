// Development aid (`--perf`): where a server's main thread spends its CPU, by component, from Linux
// perf's on-CPU samples. V8's --cpu-prof samples wall time, so on two saturated cores a thread
// preempted inside a call shows the wait as time in that call (BENCHMARKS.md); perf samples only
// while the thread runs, kernel included (a writev's TCP send is charged to whoever wrote).
//
// The servers run with --perf-basic-prof (V8 writes /tmp/perf-<pid>.map, so JIT frames have names).
// Each sample's stack is read from the leaf up and charged to the first frame a component claims:
// code of ours, a library, or a part of Node. Frames TurboFan inlined count to the function they
// were inlined into: an attribution to the nearest few per cent, not to the microsecond.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// V8 keeps the code log --perf-basic-prof needs in a file: in tmp, one per process, not in the cwd.
export const PERF_NODE_FLAGS = ['--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${join(tmpdir(), 'tessera-perf-v8-%p.log')}`];
const HZ = 999;
/** PERF_DETAIL=<component> (e.g. "rate limits"): also print that component's 25 costliest frames. */
const DETAIL = process.env.PERF_DETAIL;

/** First match wins, in this order: a frame is claimed by the most specific component. */
const COMPONENTS = [
  ['GC', /v8::internal::(Heap::|Scavenger|MarkCompact|MinorMarkCompact|MinorMS|IncrementalMarking|ConcurrentMarking|.*GarbageCollect)/],
  ['logging (pino)', /node_modules\/(pino|sonic-boom|fast-redact|quick-format-unescaped|atomic-sleep|on-exit-leak-free)\/|dist\/src\/logger\.js/],
  ['request log (src)', /dist\/src\/http\/request-log\.js/],
  ['audit (src)', /dist\/src\/audit\//],
  ['metrics (prom-client, src)', /node_modules\/prom-client\/|dist\/src\/(http\/)?metrics\.js/],
  ['tracing', /@opentelemetry|dist\/src\/telemetry\//],
  ['rate limits', /node_modules\/(express-rate-limit|rate-limit-redis)\/|dist\/src\/limits\//],
  ['ioredis', /node_modules\/(ioredis|redis-errors|redis-parser|denque|cluster-key-slot|standard-as-callback)\//],
  ['body parsing', /node_modules\/(body-parser|raw-body|qs|iconv-lite|content-type|type-is|media-typer|bytes|unpipe|http-errors)\/|node:querystring/],
  ['Kysely', /node_modules\/kysely\//],
  ['pg driver', /node_modules\/(pg|pg-protocol|pg-pool|pg-types|pg-connection-string|postgres-date|postgres-array|postgres-bytea|postgres-interval|pgpass)\//],
  ['jose', /node_modules\/jose\//],
  ['Tessera: tokens', /dist\/src\/tokens\//],
  ['Tessera: refresh, database', /dist\/src\/(refresh|db)\//],
  ['Tessera: grants, OAuth', /dist\/src\/(grants|oauth)\//],
  ['Tessera: clients, users', /dist\/src\/auth\/|dist\/src\/http\/client-authentication\.js/],
  ['Tessera: other', /dist\/src\//],
  ["the floor's own code", /bench\/floor\.mjs/],
  ['the peer (its library, our model of it)', /node_modules\/(@node-oauth|oidc-provider|koa|@koa|jsesc|quick-lru|oidc-token-hash|paseto|nanoid)|bench\/peers\//],
  ['Express, router', /node_modules\/(express|router|finalhandler|send|on-finished|vary|etag|cookie|cookie-signature|fresh|accepts|negotiator|proxy-addr|forwarded|ipaddr\.js|parseurl|encodeurl|escape-html|merge-descriptors|depd|statuses|mime-types|range-parser|serve-static)\//],
  ['Node crypto', /node::crypto|node:internal\/crypto|node:crypto|EVP_|RSA_|BN_|OPENSSL|ossl_|CRYPTO_/],
  ['Node HTTP', /node:_http|llhttp|node:internal\/http|Parser::|node:http/],
  ['Node streams, sockets', /node:internal\/streams|node:net|stream_base|node:internal\/stream|LibuvStreamWrap|StreamBase|uv__write|uv__read|uv_try_write|node:events/],
  ['Node timers, promises, ticks', /node:timers|node:internal\/timers|task_queues|node:internal\/process|Builtins_(Promise|Fulfill|Resolve|AsyncFunction|RunMicrotasks)|MicrotaskQueue/],
];

/**
 * Starts sampling thread `tid` (a process's main thread has the process's id); `stop()` ends it and
 * resolves to the CPU milliseconds of each component, per request of `requests`.
 */
export function startPerf(tid) {
  const file = join(tmpdir(), `tessera-perf-${tid}-${Date.now()}.data`);
  const recorder = spawn('perf', ['record', '-F', String(HZ), '-g', '-t', String(tid), '-o', file], { stdio: 'ignore' });
  const started = new Promise((resolve, reject) => {
    recorder.once('error', reject);
    setTimeout(resolve, 300); // perf attaches within a few ms; the window is seconds long
  });
  return {
    started,
    async stop(requests) {
      recorder.kill('SIGINT');
      if (recorder.exitCode === null) await once(recorder, 'exit');
      try {
        return await attribute(file, requests);
      } finally {
        rmSync(file, { force: true });
      }
    },
  };
}

async function attribute(file, requests) {
  const script = spawn('perf', ['script', '-i', file, '-F', 'ip,sym,dso'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const samples = new Map();
  let frames = [];
  let total = 0;
  const detail = new Map();
  const charge = () => {
    if (frames.length === 0) return;
    total += 1;
    const { owner, frame } = ownerOf(frames);
    samples.set(owner, (samples.get(owner) ?? 0) + 1);
    if (owner === DETAIL) {
      const name = frame.trim().replace(/^[0-9a-f]+\s+/, ''); // the symbol and its file, without the address
      detail.set(name, (detail.get(name) ?? 0) + 1);
    }
    frames = [];
  };
  for await (const line of createInterface({ input: script.stdout })) {
    if (line.trim() === '') charge();
    else frames.push(line);
  }
  charge();
  const perRequest = (count) => Math.round(((count / HZ) * 1e6) / Math.max(requests, 1)) / 1000;
  if (DETAIL !== undefined) for (const [name, count] of [...detail].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${DETAIL}: ${perRequest(count)} ${name}`);
  return {
    msPerRequest: perRequest(total),
    components: [...samples].sort((a, b) => b[1] - a[1]).map(([name, count]) => ({ name, msPerRequest: perRequest(count), share: Math.round((count / total) * 1000) / 10 })),
  };
}

/** The component a sample is charged to, and the frame that decided it. */
function ownerOf(frames) {
  for (const frame of frames) {
    for (const [name, pattern] of COMPONENTS) if (pattern.test(frame)) return { owner: name, frame };
  }
  return { owner: /\[kernel/.test(frames[0]) ? 'kernel, other' : 'V8, libc, other', frame: frames[0] };
}

export function printPerf(label, { msPerRequest, components }) {
  console.log(`${label}: main thread ${msPerRequest} ms CPU/req by perf; ${components.map((c) => `${c.name} ${c.msPerRequest}`).join(', ')}`);
}
