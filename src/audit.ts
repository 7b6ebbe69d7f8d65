import type { Logger } from 'pino';

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
  | 'admin_access_denied';

/** Security events that need a human (reuse of a refresh token, a late replay) are logged at `warn`. */
export function audit(log: Logger, event: AuditEvent, fields: Readonly<Record<string, unknown>>, level: 'info' | 'warn' = 'info'): void {
  log[level]({ audit: true, event, ...fields }, event);
}
