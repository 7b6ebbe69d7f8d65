import type { Logger } from 'pino';

/**
 * The stable names of audit events. Each is one structured log line with `event`, who, what and
 * from where; never a password, token or secret. Ops alert on these names, so they do not change.
 */
export type AuditEvent =
  | 'login_succeeded'
  | 'login_failed'
  | 'password_rehashed'
  | 'user_created'
  | 'user_updated'
  | 'user_deleted'
  | 'client_created'
  | 'client_deleted'
  | 'client_secret_rotated'
  | 'role_changed'
  | 'signing_key_created';

export function audit(log: Logger, event: AuditEvent, fields: Readonly<Record<string, unknown>>): void {
  log.info({ audit: true, event, ...fields }, event);
}
