import cluster from 'node:cluster';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { answerMetricsRequests, clusterMetrics } from './cluster.js';
import type { Argon2Operation } from './auth/passwords.js';
import type { GrantType } from './db/schema.js';
import type { LimitBackend, LimitLayer, LimitTopology } from './limits/layers.js';
import { readPackageVersion } from './package-root.js';

/** The grant of a token request; `unknown` when grant_type is missing or not one Tessera serves. */
export type GrantLabel = GrantType | 'unknown';

/**
 * How a token request ended: `success`, its RFC 6749 error code, or what an infrastructure answer
 * means to ops (a 429 is `rate_limited`, a 503 `unavailable`, a 500 `error`).
 */
export type TokenOutcome =
  | 'success'
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'invalid_scope'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'rate_limited'
  | 'unavailable'
  | 'error';

/** A pg pool's connections: what it holds, how many are idle, how many queries wait for one. */
export interface PoolUsage {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
  readonly max: number;
}

/** What the state gauges read when Prometheus scrapes, so that nothing of theirs runs per request. */
export interface MetricSources {
  readonly rateLimitBackend: () => LimitBackend;
  readonly rateLimitTopology: LimitTopology;
  readonly argon2Load: () => { readonly active: number; readonly queued: number };
  /** Undefined on the embedded database, which has no pool. */
  readonly databasePool: (() => PoolUsage) | undefined;
  /** Seconds since the signing key in use became active (src/keys/key-store.ts, signingKeyAgeSeconds). */
  readonly signingKeyAgeSeconds: () => number;
  /** Whether client_auth answers from its copy of every replica's blocks; undefined without Redis. */
  readonly clientAuthBlocksSynced: (() => boolean) | undefined;
}

export interface HttpLabels {
  readonly method: string;
  /** The Express route pattern, never the raw URL: ids and tokens must not become label values. */
  readonly route: string;
  readonly status: number;
}

/**
 * One process's Prometheus instruments, on a registry of its own (never prom-client's global one),
 * so that two services in one process, as in the tests, do not count into each other. Label values
 * are fixed unions: a label can never carry what a client typed.
 */
export interface Metrics {
  readonly registry: Registry;
  /** What GET /metrics serves: this process's registry, or in a cluster worker every worker's, summed. */
  exposition(): Promise<{ contentType: string; text: string }>;
  tokenRequest(grant: GrantLabel, outcome: TokenOutcome): void;
  refreshReuseDetected(): void;
  refreshGraceReplayed(): void;
  refreshLateReplayed(): void;
  rateLimitRejected(layer: LimitLayer): void;
  argon2Completed(operation: Argon2Operation, seconds: number): void;
  /** Audit rows that never reached PostgreSQL (a batched write failed, or too many waited): src/audit/writer.ts. */
  auditRowsDropped(count: number): void;
  /** Starts timing a request; call the result once its response has been sent. */
  httpRequestCompleted(labels: HttpLabels, seconds: number): void;
  /** Points the state gauges at the parts they read, once those exist (src/service.ts prepareDeps). */
  watch(sources: MetricSources): void;
}

// Records over every member of a union, so that adding a member without its label fails to compile.
const GRANTS = keys<GrantLabel>({ password: 1, refresh_token: 1, client_credentials: 1, authorization_code: 1, unknown: 1 });
const OUTCOMES = keys<TokenOutcome>({
  success: 1,
  invalid_request: 1,
  invalid_client: 1,
  invalid_grant: 1,
  invalid_scope: 1,
  unauthorized_client: 1,
  unsupported_grant_type: 1,
  rate_limited: 1,
  unavailable: 1,
  error: 1,
});
const LAYERS = keys<LimitLayer>({
  login_ip: 1,
  login_ip_account: 1,
  login_account: 1,
  client_auth: 1,
  client: 1,
  password_change: 1,
  register: 1,
  admin: 1,
  password_reset: 1,
  password_reset_account: 1,
});
const BACKENDS = keys<LimitBackend>({ redis: 1, memory: 1, memory_fallback: 1 });
const TOPOLOGIES = keys<LimitTopology>({ none: 1, single: 1, sentinel: 1, cluster: 1 });
const ARGON2_OPERATIONS = keys<Argon2Operation>({ hash: 1, verify: 1 });

function keys<T extends string>(members: Record<T, 1>): T[] {
  return Object.keys(members) as T[];
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const registers = [registry];
  let sources: MetricSources | undefined;

  collectDefaultMetrics({ register: registry });

  const tokenRequests = new Counter({
    name: 'tessera_token_requests_total',
    help: 'Token requests (POST /token, POST /refresh) by grant and outcome; outcome=success means tokens were issued.',
    labelNames: ['grant', 'outcome'] as const,
    registers,
  });
  const reuseDetections = new Counter({
    name: 'tessera_refresh_token_reuse_detections_total',
    help: 'Consumed refresh tokens presented after their successor was used: each revoked its family.',
    registers,
  });
  const graceReplays = new Counter({
    name: 'tessera_refresh_token_grace_replays_total',
    help: 'Refreshes retried inside REFRESH_REUSE_GRACE that got the same successor again.',
    registers,
  });
  const lateReplays = new Counter({
    name: 'tessera_refresh_token_late_replays_total',
    help: 'Refresh tokens presented again after REFRESH_REUSE_GRACE, before their successor was used: served that successor (audit refresh_token_replayed, late).',
    registers,
  });
  const rateLimitRejections = new Counter({
    name: 'tessera_rate_limit_rejections_total',
    help: 'Requests refused with 429, by rate-limit layer.',
    labelNames: ['layer'] as const,
    registers,
  });
  const argon2Duration = new Histogram({
    name: 'tessera_argon2_duration_seconds',
    help: 'Time one Argon2id hash or verify takes, not counting its wait in the queue.',
    labelNames: ['operation'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const auditRowsDropped = new Counter({
    name: 'tessera_audit_rows_dropped_total',
    help: 'Audit events whose row could not be written to PostgreSQL (a batched write failed, or the buffer was full); their log lines were written.',
    registers,
  });
  const httpDuration = new Histogram({
    name: 'tessera_http_request_duration_seconds',
    help: 'HTTP request latency by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });

  // Every series starts at zero, so rate() and alerts see the first event rather than a new series.
  for (const grant of GRANTS) for (const outcome of OUTCOMES) tokenRequests.inc({ grant, outcome }, 0);
  for (const layer of LAYERS) rateLimitRejections.inc({ layer }, 0);
  for (const operation of ARGON2_OPERATIONS) argon2Duration.zero({ operation });

  new Gauge({
    name: 'tessera_rate_limit_backend',
    help: 'Where rate-limit counters are kept (1 = now): redis, memory (no Redis configured), or memory_fallback (Redis unreachable).',
    labelNames: ['backend'] as const,
    registers,
    aggregator: 'max', // across cluster workers: 1 if any worker counts there
    collect() {
      if (sources === undefined) return;
      const current = sources.rateLimitBackend();
      for (const backend of BACKENDS) this.set({ backend }, backend === current ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tessera_rate_limit_topology',
    help: 'The Redis deployment rate-limit counters are shared through (1 = configured): single (REDIS_URL), sentinel (REDIS_SENTINELS), cluster (REDIS_CLUSTER_NODES), or none.',
    labelNames: ['topology'] as const,
    registers,
    aggregator: 'max',
    collect() {
      if (sources === undefined) return;
      const current = sources.rateLimitTopology;
      for (const topology of TOPOLOGIES) this.set({ topology }, topology === current ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tessera_argon2_queue_depth',
    help: 'Argon2 operations waiting for a slot (ARGON2_QUEUE_LIMIT bounds it; beyond, 503).',
    registers,
    collect() {
      if (sources !== undefined) this.set(sources.argon2Load().queued);
    },
  });
  new Gauge({
    name: 'tessera_argon2_active',
    help: 'Argon2 operations running now (ARGON2_MAX_CONCURRENCY bounds it).',
    registers,
    collect() {
      if (sources !== undefined) this.set(sources.argon2Load().active);
    },
  });
  new Gauge({
    name: 'tessera_signing_key_age_seconds',
    help: 'Seconds since the signing key in use became active.',
    registers,
    aggregator: 'max',
    collect() {
      if (sources !== undefined) this.set(sources.signingKeyAgeSeconds());
    },
  });

  // The Prometheus convention for what runs (as node_exporter's node_uname_info): join on it to
  // see which version a replica runs, and when a rollout reached it.
  new Gauge({
    name: 'tessera_build_info',
    help: 'Always 1: the version of Tessera and of Node.js this process runs.',
    labelNames: ['version', 'node_version'] as const,
    registers,
    aggregator: 'max', // every worker runs the same build: 1, not the worker count
  }).set({ version: readPackageVersion(), node_version: process.version }, 1);

  // The primary (src/cluster.ts) sums what every worker's registry holds.
  if (cluster.isWorker) answerMetricsRequests(registry);

  return {
    registry,
    exposition: async () => ({ contentType: registry.contentType, text: cluster.isWorker ? await clusterMetrics() : await registry.metrics() }),
    tokenRequest: (grant, outcome) => tokenRequests.inc({ grant, outcome }),
    refreshReuseDetected: () => reuseDetections.inc(),
    refreshGraceReplayed: () => graceReplays.inc(),
    refreshLateReplayed: () => lateReplays.inc(),
    rateLimitRejected: (layer) => rateLimitRejections.inc({ layer }),
    argon2Completed: (operation, seconds) => argon2Duration.observe({ operation }, seconds),
    auditRowsDropped: (count) => auditRowsDropped.inc(count),
    httpRequestCompleted: (labels, seconds) => httpDuration.observe(labels, seconds),
    watch: (watched) => {
      if (sources !== undefined) throw new Error('the metrics already watch a service');
      sources = watched;
      const pool = watched.databasePool;
      if (pool !== undefined) watchDatabasePool(registry, pool);
      const synced = watched.clientAuthBlocksSynced;
      if (synced !== undefined) watchClientAuthBlocks(registry, synced);
    },
  };
}

/** Registered only with Redis: without it client_auth never reads anything but memory. */
function watchClientAuthBlocks(registry: Registry, synced: () => boolean): void {
  new Gauge({
    name: 'tessera_client_auth_blocks_synced',
    help: 'Whether client_auth checks answer from this process\'s synced copy of every replica\'s blocks (1), or read Redis on each client authentication (0: subscription down, or being read again).',
    registers: [registry],
    aggregator: 'min', // across cluster workers: 1 only if every worker answers from its copy
    collect() {
      this.set(synced() ? 1 : 0);
    },
  });
}

/** Registered only where there is a pool: on the embedded database these would be zeros that mean nothing. */
function watchDatabasePool(registry: Registry, usage: () => PoolUsage): void {
  const registers = [registry];
  new Gauge({
    name: 'tessera_db_pool_connections',
    help: 'PostgreSQL pool connections by state: in_use (checked out) or idle.',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const pool = usage();
      this.set({ state: 'in_use' }, pool.total - pool.idle);
      this.set({ state: 'idle' }, pool.idle);
    },
  });
  new Gauge({
    name: 'tessera_db_pool_waiting',
    help: 'Queries waiting for a PostgreSQL pool connection.',
    registers,
    collect() {
      this.set(usage().waiting);
    },
  });
  new Gauge({
    name: 'tessera_db_pool_max_connections',
    help: 'The most connections the PostgreSQL pool opens.',
    registers,
    collect() {
      this.set(usage().max);
    },
  });
}
