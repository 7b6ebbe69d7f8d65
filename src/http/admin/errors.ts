import { AccountError, type AccountErrorCode } from '../../auth/accounts.js';
import { AdminAccessError } from '../../auth/admin-access.js';
import { ClientError, type ClientErrorCode } from '../../auth/client-registry.js';
import { RoleError, type RoleErrorCode } from '../../auth/roles.js';
import { OAuthError } from '../../oauth/errors.js';

type Code = AccountErrorCode | RoleErrorCode | ClientErrorCode;

/** 409: the request is well-formed but conflicts with what exists (RFC 9110 §15.5.10). */
const STATUS: Record<Code, number> = {
  invalid_username: 400,
  weak_password: 400,
  invalid_scope: 400,
  unknown_role: 400,
  invalid_profile: 400,
  invalid_role: 400,
  invalid_client_metadata: 400,
  weak_secret: 400,
  username_taken: 409,
  email_taken: 409,
  role_exists: 409,
  client_exists: 409,
  no_secret: 409,
  not_found: 404,
};

export const notFound = (what: 'user' | 'role' | 'client' | 'session') =>
  new OAuthError('invalid_request', `no such ${what}`, { status: 404 });

export const conflict = (description: string) => new OAuthError('invalid_request', description, { status: 409 });

/**
 * Wraps an admin action: a broken domain rule (the same rules the CLI applies) becomes an
 * invalid_request with its status. Anything else goes on to the central error handler.
 */
export async function asAdminAction<T>(what: 'user' | 'role' | 'client', action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    // The change would lock the acting admin out: it was rolled back.
    if (error instanceof AdminAccessError) throw conflict(error.message);
    if (!(error instanceof AccountError || error instanceof RoleError || error instanceof ClientError)) throw error;
    // A path parameter is not echoed back: a 404 only says what was not found.
    if (error.code === 'not_found') throw notFound(what);
    throw new OAuthError('invalid_request', describe(error.message), { status: STATUS[error.code] });
  }
}

/**
 * Domain messages may quote the input (a scope, a role name). RFC 6749 §5.2 allows only
 * %x20-21 / %x23-5B / %x5D-7E in error_description: anything else becomes `?`.
 */
function describe(message: string): string {
  const safe = message.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '?');
  return safe.length > 200 ? `${safe.slice(0, 200)}...` : safe;
}
