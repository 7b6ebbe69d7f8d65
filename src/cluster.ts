import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';

/** IPC between a worker serving /metrics and the primary, which alone can see every worker's metrics. */
export const METRICS_REQUEST = 'tessera:metrics-request';
export const METRICS_RESPONSE = 'tessera:metrics-response';
/** IPC between the primary and each worker it sums: that worker's own registry. */
const WORKER_METRICS_REQUEST = 'tessera:worker-metrics-request';
const WORKER_METRICS_RESPONSE = 'tessera:worker-metrics-response';
const WORKER_METRICS_TIMEOUT_MS = 4_000;

type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** More crashes than this within the window is a failing build or host, not bad luck: stop, do not loop. */
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 60_000;

/**
 * WEB_CONCURRENCY above 1: this process forks that many workers, each a whole `tessera serve`
 * sharing the port through node:cluster, like replicas on one host (every replica is already
 * identical and stateless, so nothing else changes). It restarts a worker that crashes. If a worker
 * fails before it ever served (no database, a bad key) it stops the others and exits 1, as a single
 * process would. On the stop signal every worker drains (SHUTDOWN_DELAY, then SHUTDOWN_TIMEOUT) and
 * stops, then this process exits; a second signal is passed on. A scrape of /metrics on any worker asks this process for the sum of all workers.
 */
export async function superviseWorkers(count: number, log: Logger, stopSignal: Promise<string>, hurrySignal?: Promise<string>): Promise<number> {
  const live = new Set<Worker>();
  const served = new WeakSet<Worker>();
  const crashes: number[] = [];
  let stopping = false;
  let failed = false;

  const fork = () => {
    const worker = cluster.fork();
    live.add(worker);
    worker.once('listening', () => served.add(worker));
  };
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const worker of live) worker.process.kill('SIGTERM');
  };

  cluster.on('message', (worker, message: { type?: unknown; id?: unknown }) => {
    if (message?.type !== METRICS_REQUEST) return;
    // Only workers that listen are asked: one still starting (at first, or replacing one that died)
    // has counted nothing yet, and cannot answer until it has loaded.
    sumWorkerMetrics([...live].filter((each) => served.has(each)))
      .then(
        (text) => ({ text }),
        (error: unknown) => ({ error: error instanceof Error ? error.message : String(error) }),
      )
      .then((answer) => {
        if (worker.isConnected()) worker.send({ type: METRICS_RESPONSE, id: message.id, ...answer });
      });
  });

  const stopped = new Promise<void>((resolve) => {
    cluster.on('exit', (worker, code, signal) => {
      live.delete(worker);
      // worker_pid: `pid` on every line is the process that writes it (src/logger.ts), here the primary.
      const exit = { worker: worker.id, worker_pid: worker.process.pid, code, signal };
      if (stopping) {
        // A worker still loading when the signal came has no handler yet and dies of it: that is a stop too.
        if (code !== 0 && signal !== 'SIGTERM') failed = true;
      } else if (!served.has(worker)) {
        failed = true;
        log.error(exit, 'a worker failed to start: stopping');
        stop();
      } else {
        const now = Date.now();
        crashes.push(now);
        while (crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
        if (crashes.length > MAX_CRASHES) {
          failed = true;
          log.error({ ...exit, crashes: crashes.length }, 'workers keep crashing: stopping');
          stop();
        } else {
          log.error(exit, 'a worker died: starting another');
          fork();
        }
      }
      if (live.size === 0) resolve();
    });
  });

  for (let i = 0; i < count; i += 1) fork();
  log.info({ workers: count }, 'started workers');
  void stopSignal.then((signal) => {
    log.info({ signal }, 'stopping workers');
    stop();
  });
  // Every worker drains for SHUTDOWN_DELAY, still accepting through the shared port; a second
  // signal here is passed on, so that they stop waiting too.
  void hurrySignal?.then((signal) => {
    log.info({ signal }, 'second stop signal: passing it on to the workers');
    for (const worker of live) worker.process.kill('SIGTERM');
  });
  await stopped;
  log.info('stopped');
  return failed ? 1 : 0;
}

/** Each worker's registry, summed as prom-client sums a cluster (its `aggregator` per metric). */
async function sumWorkerMetrics(workers: readonly Worker[]): Promise<string> {
  const each = await Promise.all(workers.map((worker) => askWorker(worker)));
  return AggregatorRegistry.aggregate(each).metrics();
}

let collections = 0;

function askWorker(worker: Worker): Promise<WorkerMetrics> {
  const id = (collections += 1);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new Error(`worker ${worker.id} did not answer the metrics request`));
    }, WORKER_METRICS_TIMEOUT_MS);
    const onMessage = (message: { type?: unknown; id?: unknown; metrics?: WorkerMetrics; error?: string }) => {
      if (message?.type !== WORKER_METRICS_RESPONSE || message.id !== id) return;
      done();
      if (message.error !== undefined) reject(new Error(message.error));
      else resolve(message.metrics ?? []);
    };
    // A worker that dies meanwhile took its counts with it.
    const onExit = () => {
      done();
      resolve([]);
    };
    function done() {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
    }
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    worker.send({ type: WORKER_METRICS_REQUEST, id });
  });
}

/** In a worker: answers the primary's requests for this worker's own registry. */
export function answerMetricsRequests(registry: Registry): void {
  process.on('message', (message: { type?: unknown; id?: unknown }) => {
    if (message?.type !== WORKER_METRICS_REQUEST) return;
    registry.getMetricsAsJSON().then(
      (metrics) => process.send!({ type: WORKER_METRICS_RESPONSE, id: message.id, metrics }),
      (error: unknown) => process.send!({ type: WORKER_METRICS_RESPONSE, id: message.id, error: error instanceof Error ? error.message : String(error) }),
    );
  });
}

let requests = 0;

/** In a worker: every worker's metrics, summed by the primary (prom-client's cluster aggregation). */
export function clusterMetrics(timeoutMs = 5_000): Promise<string> {
  const id = (requests += 1);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error('the primary did not answer the metrics request'));
    }, timeoutMs);
    function onMessage(message: { type?: unknown; id?: unknown; text?: string; error?: string }) {
      if (message?.type !== METRICS_RESPONSE || message.id !== id) return;
      clearTimeout(timer);
      process.off('message', onMessage);
      if (message.error !== undefined) reject(new Error(message.error));
      else resolve(message.text ?? '');
    }
    process.on('message', onMessage);
    process.send!({ type: METRICS_REQUEST, id });
  });
}
