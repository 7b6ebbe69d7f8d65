import express, { type Express } from 'express';
import type { Deps } from '../deps.js';
import { adminRouter } from './admin/router.js';
import { cors } from './cors.js';
import { errorHandler, notFound } from './errors.js';
import { healthRouter } from './health.js';
import { introspectRouter } from './introspect.js';
import { httpMetrics, metricsRouter } from './metrics.js';
import { passwordChangeRouter } from './password-change.js';
import { passwordResetRouter } from './password-reset.js';
import { registerRouter } from './register.js';
import { requestLogger } from './request-log.js';
import { revokeRouter } from './revoke.js';
import { signInRouter } from './signin/index.js';
import { tokenRouter } from './token-endpoint.js';
import { userinfoRouter } from './userinfo.js';
import { wellKnownRouter } from './well-known.js';

/** The HTTP edge. Everything it needs comes in `deps`; Express objects stop at src/http/. */
export function createApp(deps: Deps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag'); // the JWKS sets its own; nothing else is cacheable
  app.set('trust proxy', deps.config.trustProxy);

  app.use(httpMetrics(deps.metrics));
  app.use(requestLogger(deps.log));
  app.use(cors(deps.config.corsOrigins));
  app.use((_req, res, next) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.use(tokenRouter(deps));
  app.use(revokeRouter(deps));
  app.use(introspectRouter(deps));
  app.use(wellKnownRouter(deps));
  app.use(signInRouter(deps));
  app.use(userinfoRouter(deps));
  app.use(passwordChangeRouter(deps));
  app.use(registerRouter(deps));
  app.use(passwordResetRouter(deps));
  app.use(healthRouter(deps));
  app.use(adminRouter(deps));
  // With METRICS_PORT set, /metrics is on that listener only (src/service.ts), not on the public port.
  if (deps.config.metricsPort === undefined) app.use(metricsRouter(deps.metrics));
  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}
