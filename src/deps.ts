import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { AuditLog } from './audit/writer.js';
import type { ClientLookup } from './auth/client-cache.js';
import type { PasswordHasher } from './auth/passwords.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Database } from './db/schema.js';
import type { DrainState } from './drain.js';
import type { KeyRing } from './keys/key-encryption.js';
import type { KeyStore } from './keys/key-store.js';
import type { RateLimits } from './limits/rate-limits.js';
import type { Mailer } from './mail/mailer.js';
import type { Metrics } from './metrics.js';

/** Everything the HTTP layer, the grants and the CLI need, passed in (never imported as singletons). */
export interface Deps {
  readonly config: Config;
  readonly db: Kysely<Database>;
  /** Clients by id for client authentication, kept while the database announces changes (src/auth/client-cache.ts). */
  readonly clients: ClientLookup;
  readonly clock: Clock;
  readonly log: Logger;
  readonly keys: KeyStore;
  /** KEY_ENCRYPTION_KEYS: seals signing keys at rest. */
  readonly keyRing: KeyRing;
  readonly passwords: PasswordHasher;
  readonly limits: RateLimits;
  /** Server secrets (from KEY_ENCRYPTION_KEYS) that seal refresh-token successors: src/refresh/tokens.ts. */
  readonly successorKeys: readonly Buffer[];
  /** Prometheus instruments on this service's own registry (src/metrics.ts). */
  readonly metrics: Metrics;
  /** Audit events of the hot paths (logins, refreshes, limits): a log line now, a row in the next batch (src/audit/writer.ts). */
  readonly audit: AuditLog;
  /** Whether the server is draining before it stops (src/drain.ts): listen() gives its app one of its own. */
  readonly drain: DrainState;
  /** SMTP for password-reset mail; undefined when SMTP_URL is unset (the feature is off). */
  readonly mailer?: Mailer | undefined;
}
