/** PostgreSQL's SQLSTATE for a unique-constraint violation; with `constraint`, of that constraint or unique index only. */
export function isUniqueViolation(error: unknown, constraint?: string): boolean {
  if (typeof error !== 'object' || error === null || (error as { code?: unknown }).code !== '23505') return false;
  return constraint === undefined || (error as { constraint?: unknown }).constraint === constraint;
}

/** SQLSTATE 23503: a foreign key points at nothing (an unknown role, say). */
export function isForeignKeyViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23503';
}

/**
 * An error PostgreSQL (or PGlite) answered with: the statement ran and failed, so a statement in
 * autocommit did not commit. Anything else (a query timeout, a lost connection) leaves its outcome
 * unknown: it may have committed, or may still.
 */
export function isDatabaseAnswer(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  return typeof severity === 'string' && typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}
