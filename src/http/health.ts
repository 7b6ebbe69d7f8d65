import { Router } from 'express';
import { pingDatabase } from '../db/users.js';
import type { Deps } from '../deps.js';
import { methodNotAllowed, setNoStore } from './errors.js';

const READINESS_TIMEOUT_MS = 1_000;

/**
 * GET /healthz: the process answers. GET /readyz: the database answers within a second and keys are
 * loaded, and the process is not shutting down.
 */
export function healthRouter(deps: Deps): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    setNoStore(res);
    res.json({ status: 'ok' });
  });
  router.all('/healthz', methodNotAllowed('GET', 'HEAD'));
  router.get('/readyz', async (_req, res) => {
    setNoStore(res);
    // At once, without asking the database: the load balancer should stop sending traffic here.
    if (deps.drain.draining) {
      res.set('Retry-After', '5');
      res.status(503).json({ status: 'shutting_down' });
      return;
    }
    const database = await withTimeout(pingDatabase(deps.db), READINESS_TIMEOUT_MS).then(
      () => 'ok' as const,
      (error: unknown) => {
        deps.log.warn({ err: error }, 'readiness: database check failed');
        return 'unavailable' as const;
      },
    );
    const keys = keysLoaded(deps) ? ('ok' as const) : ('unavailable' as const);
    const ready = database === 'ok' && keys === 'ok';
    if (!ready) res.set('Retry-After', '5');
    // Rate limits never make the service unready: without Redis they continue per process.
    // Which mode this replica counts in now, and through which Redis deployment.
    const rateLimits = { rate_limits: deps.limits.backend(), rate_limit_topology: deps.limits.topology };
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready', checks: { database, keys, ...rateLimits } });
  });
  router.all('/readyz', methodNotAllowed('GET', 'HEAD'));
  return router;
}

/** Keys are loaded, and the latest reload worked (else this replica may sign with a retired key). */
function keysLoaded(deps: Deps): boolean {
  return deps.keys.isFresh() && deps.keys.current().signing.kid !== '';
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
