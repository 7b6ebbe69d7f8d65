import { Router } from 'express';
import { KeyLifecycleError, listKeyStatus, rotateSigningKey } from '../../keys/lifecycle.js';
import type { Deps } from '../../deps.js';
import { methodNotAllowed } from '../errors.js';
import { auditContextOf } from '../request-log.js';
import { actorOf } from './auth.js';
import { conflict } from './errors.js';
import { readBody } from './input.js';

/**
 * Signing keys: their states and dates (never key material: the public halves are in the JWKS),
 * and a rotation, which adds a next key that signs once every verifier can know it
 * (src/keys/lifecycle.ts, the same the CLI and the schedule use).
 */
export function keysRouter(deps: Deps): Router {
  const router = Router();

  // This replica serves a JWKS: its own settings count beside every replica's announced ones.
  const decider = { config: deps.config, serving: true };

  router.get('/keys', async (_req, res) => {
    res.json({ items: await listKeyStatus(deps.db, decider) });
  });
  router.all('/keys', methodNotAllowed('GET', 'HEAD'));

  router.post('/keys/rotate', async (req, res) => {
    readBody(req.body, {});
    // rotateSigningKey writes the signing_key_created audit event, naming this admin as the actor.
    const keyDeps = { ...decider, db: deps.db, ring: deps.keyRing, log: deps.log, clock: deps.clock };
    const context = auditContextOf(req, res, { type: 'user', id: actorOf(res) });
    const status = await rotateSigningKey(keyDeps, actorOf(res), context).catch((error: unknown) => {
      // One next key at a time, and only under the deployment's key-encryption keys.
      throw error instanceof KeyLifecycleError ? conflict(error.message) : error;
    });
    // Publish the new key from this replica at once; the others pick it up within KEY_RELOAD_INTERVAL.
    await deps.keys.reload().catch((error: unknown) => deps.log.warn({ err: error }, 'reloading signing keys after a rotation failed'));
    // 200, not 201: a key has no resource of its own to point a Location at (keys are listed at GET /admin/keys).
    res.status(200).json(status);
  });
  router.all('/keys/rotate', methodNotAllowed('POST'));

  return router;
}
