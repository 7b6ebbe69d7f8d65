import { REDACTED, TOP_LEVEL_REDACTED_PATHS } from '../logger.js';
import type { AuditActorType, NewAuditEventRow } from '../db/schema.js';
import type { AuditEvent } from './events.js';

/** Who did it: a user (their id), a client (its id), the CLI (the OS user), or the service itself. */
export interface AuditActor {
  readonly type: AuditActorType;
  readonly id?: string | undefined;
}

/** Where an audited action came from: who, and for an HTTP request its address and X-Request-Id. */
export interface AuditContext {
  readonly actor: AuditActor;
  readonly ip?: string | undefined;
  readonly requestId?: string | undefined;
}

export type AuditFields = Readonly<Record<string, unknown>>;

/** One event as its call site says it: the same fields its log line has always had. */
export interface AuditNote {
  readonly event: AuditEvent;
  readonly fields: AuditFields;
  readonly level?: 'info' | 'warn';
}

export const SYSTEM: AuditContext = { actor: { type: 'system' } };

/**
 * The names a detail is never kept under, at any depth: what src/logger.ts redacts from log lines,
 * and any `*_hash` (a password, token or secret hash is as good as one to an offline guesser).
 */
const SECRET_NAMES: ReadonlySet<string> = new Set(TOP_LEVEL_REDACTED_PATHS.map((name) => name.toLowerCase()));
const isSecretName = (name: string) => SECRET_NAMES.has(name.toLowerCase()) || /(^|_)hash$/i.test(name);

/** A copy of `value` with every secret-named member replaced by `[redacted]`, and dates as ISO text. */
export function redactDetails(value: unknown, depth = 0): unknown {
  if (value instanceof Date) return value.toISOString();
  if (typeof value !== 'object' || value === null) return value;
  if (depth > 8) return REDACTED; // nothing audited nests this deep; a cycle must not loop
  if (Array.isArray(value)) return value.map((item) => redactDetails(item, depth + 1));
  const copy: Record<string, unknown> = {};
  for (const [name, member] of Object.entries(value)) {
    if (member === undefined) continue;
    copy[name] = isSecretName(name) ? REDACTED : redactDetails(member, depth + 1);
  }
  return copy;
}

/** The fields that become columns of their own rather than details. */
const COLUMN_FIELDS: ReadonlySet<string> = new Set(['ip', 'actor', 'client_id']);
/**
 * The first of these an event names is what it is about: a user, a role, a signing key, an account
 * under attack; a client only for the client's own events (elsewhere it is the column `client_id`).
 */
const SUBJECT_FIELDS = ['user_id', 'role', 'kid', 'account'] as const;
const subjectFieldOf = (note: AuditNote) =>
  SUBJECT_FIELDS.find((name) => typeof note.fields[name] === 'string') ??
  (note.event.startsWith('client_') && typeof note.fields['client_id'] === 'string' ? 'client_id' : undefined);

/** The row an event becomes: columns from its well-known fields and context, the rest as redacted details. */
export function toAuditRow(note: AuditNote, context: AuditContext, at: Date): NewAuditEventRow {
  const { fields } = note;
  const subjectField = subjectFieldOf(note);
  const details: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || COLUMN_FIELDS.has(name) || name === subjectField) continue;
    details[name] = value;
  }
  const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : null);
  return {
    occurred_at: at,
    type: note.event,
    actor_type: context.actor.type,
    actor_id: text(context.actor.id),
    subject: subjectField === undefined ? null : (fields[subjectField] as string),
    client_id: text(fields['client_id']),
    ip: text(context.ip) ?? text(fields['ip']),
    request_id: text(context.requestId),
    details: redactDetails(details) as Record<string, unknown>,
  };
}
