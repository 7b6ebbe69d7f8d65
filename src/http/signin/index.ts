import { Router } from 'express';
import type { Deps } from '../../deps.js';
import { authorizeRouter } from './authorize.js';
import { logoutRouter } from './logout.js';

/** Browser sign-in (DESIGN.md): /authorize with its hosted sign-in page, and /logout. */
export function signInRouter(deps: Deps): Router {
  const router = Router();
  router.use(authorizeRouter(deps));
  router.use(logoutRouter(deps));
  return router;
}
