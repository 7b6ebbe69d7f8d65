import type { Logger } from 'pino';
import { REDACTED, TOP_LEVEL_REDACTED_PATHS } from '../logger.js';

/**
 * The stable names of audit events. Each is one structured log line with `event`, who, what and
 * from where; never a password, token or secret. Ops alert on these names, so they do not change.
 */
export type AuditEvent =
  | 'login_succeeded'
  | 'login_failed'
  | 'password_rehashed'
  | 'token_refreshed'
  | 'refresh_token_replayed'
  | 'refresh_token_reuse_detected'
  | 'refresh_outcome_unknown'
  | 'refresh_failed'
  | 'refresh_family_revoked'
  | 'user_logged_out'
  | 'password_changed'
  | 'password_change_failed'
  | 'password_reset_requested'
  | 'password_reset_completed'
  | 'password_reset_failed'
  | 'rate_limit_tripped'
  | 'user_created'
  | 'user_updated'
  | 'user_deleted'
  | 'client_created'
  | 'client_updated'
  | 'client_deleted'
  | 'client_secret_rotated'
  | 'role_changed'
  | 'signing_key_created'
  | 'signing_key_activated'
  | 'signing_key_removed'
  | 'keys_reencrypted'
  | 'client_token_issued'
  | 'user_registered'
  | 'admin_access_denied'
  | 'browser_session_started'
  | 'browser_session_ended'
  | 'authorization_code_issued'
  | 'authorization_code_exchanged'
  | 'authorization_code_refused'
  | 'authorization_code_reuse_detected';

/** Security events that need a human (reuse of a refresh token, a late replay) are logged at `warn`. */
export function audit(log: Logger, event: AuditEvent, fields: Readonly<Record<string, unknown>>, level: 'info' | 'warn' = 'info'): void {
  (isFlat(fields) ? flatLines(log) : log)[level]({ audit: true, event, ...fields }, event);
}

/**
 * Audit lines whose fields are all flat (ids, addresses, reasons, lists of scopes: almost every
 * one) go through a child logger that redacts the top-level names only: the wildcard paths of
 * src/logger.ts look inside nested objects, a flat line has none, and they cost each line about
 * 15 µs (a refresh writes one). A line with a nested object (an error) keeps the full redaction.
 */
const flat = new WeakMap<Logger, Logger>();
function flatLines(log: Logger): Logger {
  let lines = flat.get(log);
  if (lines === undefined) {
    lines = log.child({}, { redact: { paths: TOP_LEVEL_REDACTED_PATHS, censor: REDACTED } });
    flat.set(log, lines);
  }
  return lines;
}

function isFlat(fields: Readonly<Record<string, unknown>>): boolean {
  for (const name in fields) {
    const value = fields[name];
    if (typeof value !== 'object' || value === null) continue;
    if (!Array.isArray(value) || value.some((item) => typeof item === 'object' && item !== null)) return false;
  }
  return true;
}
