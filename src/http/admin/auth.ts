import type { Request, RequestHandler, Response } from 'express';
import type { Kysely } from 'kysely';
import { SYSTEM } from '../../audit/entry.js';
import type { AuditEvent } from '../../audit/events.js';
import { auditedChange } from '../../audit/writer.js';
import type { Database } from '../../db/schema.js';
import { ADMIN_SCOPE, type ActingAdmin } from '../../auth/admin-access.js';
import { findUserProfile } from '../../db/users.js';
import type { Deps } from '../../deps.js';
import { OAuthError } from '../../oauth/errors.js';
import { authenticateUserWith } from '../bearer.js';
import { auditContextOf, requestIdOf } from '../request-log.js';

/** RFC 6750 §3.1: the token is fine but lacks the scope; the challenge names the one needed. */
function insufficientScope(): OAuthError {
  return new OAuthError('insufficient_scope', 'this endpoint needs an access token with the admin scope', {
    headers: { 'WWW-Authenticate': `Bearer realm="tessera", error="insufficient_scope", scope="${ADMIN_SCOPE}"` },
  });
}

/**
 * Every /admin request: a user's access token (authenticateUserWith refuses disabled users and ended
 * sessions) that carries `admin`, held by a user who still has `admin` now. The last check makes
 * taking the admin role away effective at once, not when the admin's token expires.
 */
export function requireAdmin(deps: Deps): RequestHandler {
  return async (req, res, next) => {
    try {
      // The user, the session and the user's scopes now: one query.
      const { claims, user } = await authenticateUserWith(deps, req, findUserProfile);
      if (!claims.scope.split(' ').includes(ADMIN_SCOPE)) throw insufficientScope();
      if (!user.scopes.includes(ADMIN_SCOPE)) throw insufficientScope();
      res.locals['adminId'] = user.id;
      res.locals['adminClientId'] = claims.client_id;
    } catch (error) {
      // Someone probing for admin rights should show up where alerts look: the audit log.
      if (error instanceof OAuthError) {
        const fields = { reason: error.code, path: req.baseUrl + req.path, ip: req.ip };
        deps.audit.record('admin_access_denied', fields, { ...SYSTEM, requestId: requestIdOf(res) });
      }
      throw error;
    }
    next();
  };
}

/** The acting admin's user id (set by requireAdmin). */
export function actorOf(res: Response): string {
  return res.locals['adminId'] as string;
}

/** The acting admin and the client of their token: what an admin's change may not take away (src/auth/admin-access.ts). */
export function actingAdmin(res: Response): ActingAdmin {
  return { userId: actorOf(res), clientId: res.locals['adminClientId'] as string };
}

/** What an admin change records: its event, and fields besides the acting admin and the address. */
export interface AdminNote {
  readonly event: AuditEvent;
  readonly fields: Readonly<Record<string, unknown>>;
}

/**
 * An admin's change and its audit event in one transaction: a change refused or rolled back leaves
 * no row. The event names the acting admin (actor `user`) and where the request came from.
 */
export async function adminChange<T>(
  deps: Deps,
  req: Request,
  res: Response,
  change: (trx: Kysely<Database>) => Promise<T>,
  note: (result: T) => AdminNote | undefined,
): Promise<T> {
  return auditedChange(deps, auditContextOf(req, res, { type: 'user', id: actorOf(res) }), change, (result) => {
    const described = note(result);
    return described && { event: described.event, fields: { actor: actorOf(res), ip: req.ip, ...described.fields } };
  });
}
