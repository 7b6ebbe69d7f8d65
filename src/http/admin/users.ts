import { Router } from 'express';
import { createAccount, setAccountPassword, updateAccount } from '../../auth/accounts.js';
import { keepAdminAccess } from '../../auth/admin-access.js';
import { generatePassword, hasControlCharacters } from '../../auth/passwords.js';
import { foldUsername, MAX_USERNAME_LENGTH } from '../../auth/usernames.js';
import type { User } from '../../db/schema.js';
import { deleteUser, findAccessOfUsers, findUserById, listUsers } from '../../db/users.js';
import type { Deps } from '../../deps.js';
import { isUuid } from '../../ids.js';
import { invalidRequest } from '../../oauth/errors.js';
import { methodNotAllowed } from '../errors.js';
import { actingAdmin, actorOf, auditAdmin } from './auth.js';
import { asAdminAction, conflict, notFound } from './errors.js';
import { type Body, page, readBody, readLimit, readQuery, requireSomeField } from './input.js';

/** What the admin API shows of a user: never the password hash. */
export interface UserView {
  readonly id: string;
  readonly username: string;
  readonly disabled: boolean;
  readonly roles: string[];
  /** Granted directly; the user may also have their roles' scopes. */
  readonly scopes: string[];
  readonly created_at: Date;
  readonly updated_at: Date;
  readonly password_changed_at: Date;
  readonly email: string | null;
  readonly email_verified: boolean;
  readonly name: string | null;
  readonly attributes: Record<string, unknown>;
}

async function viewUsers(deps: Deps, users: readonly User[]): Promise<UserView[]> {
  const access = await findAccessOfUsers(
    deps.db,
    users.map((user) => user.id),
  );
  return users.map((user) => ({
    id: user.id,
    username: user.username,
    disabled: user.disabled,
    roles: access.get(user.id)?.roles ?? [],
    scopes: access.get(user.id)?.scopes ?? [],
    created_at: user.created_at,
    updated_at: user.updated_at,
    password_changed_at: user.password_changed_at,
    email: user.email,
    email_verified: user.email_verified,
    name: user.name,
    attributes: user.attributes,
  }));
}

const viewUser = async (deps: Deps, user: User) => (await viewUsers(deps, [user]))[0]!;

/** The user named in the path; a malformed id names nobody and never reaches PostgreSQL. */
export async function requireUser(deps: Deps, id: string): Promise<User> {
  const user = isUuid(id) ? await findUserById(deps.db, id) : undefined;
  if (user === undefined) throw notFound('user');
  return user;
}

const PROFILE = {
  email: { type: 'string', nullable: true },
  email_verified: { type: 'boolean' },
  name: { type: 'string', nullable: true },
  attributes: { type: 'object' },
} as const;
const CREATE = {
  username: { type: 'string', required: true },
  password: { type: 'string' },
  scopes: { type: 'strings' },
  roles: { type: 'strings' },
  ...PROFILE,
} as const;
const UPDATE = { scopes: { type: 'strings' }, roles: { type: 'strings' }, disabled: { type: 'boolean' }, ...PROFILE } as const;

/** The profile members of a body, as src/auth/accounts.ts names them. */
const profileOf = (body: Body<typeof PROFILE>) => ({
  email: body.email,
  emailVerified: body.email_verified,
  name: body.name,
  attributes: body.attributes,
});

/** What an audit line says of a profile change: which fields changed, never the values (personal data). */
const profileChanged = (body: object) => Object.keys(body).filter((name) => Object.hasOwn(PROFILE, name)).sort();
const RESET = { password: { type: 'string' } } as const;

/**
 * Users: create, list (paged, searchable), get, change scopes, roles and disabled, delete, reset
 * the password. The account rules are src/auth/accounts.ts, the same the CLI applies. A password
 * Tessera generates is returned once, in the response that set it.
 */
export function usersRouter(deps: Deps): Router {
  const router = Router();
  const now = () => new Date(deps.clock.now());

  router.post('/users', async (req, res) => {
    const body = readBody(req.body, CREATE);
    const generated = body.password === undefined ? generatePassword() : undefined;
    const user = await asAdminAction('user', () =>
      createAccount(deps.db, deps.passwords, { ...body, ...profileOf(body), password: body.password ?? generated! }, now()),
    );
    const view = await viewUser(deps, user);
    auditAdmin(deps, req, res, 'user_created', { user_id: user.id, scopes: view.scopes, roles: view.roles, profile: profileChanged(body) });
    res.status(201).location(`/admin/users/${user.id}`).json({ ...view, ...(generated ? { password: generated } : {}) });
  });

  router.get('/users', async (req, res) => {
    const query = readQuery(req, ['limit', 'after', 'search']);
    const limit = readLimit(query['limit']);
    const after = query['after'];
    if (after !== undefined && (after === '' || [...after].length > MAX_USERNAME_LENGTH || hasControlCharacters(after))) {
      throw invalidRequest('after must be the next_after of a previous page');
    }
    // Usernames are stored normalised, so the search is folded the same way: `ALICE` finds alice.
    const search = query['search'] === undefined ? undefined : foldUsername(query['search']);
    if (search !== undefined && ([...search].length > MAX_USERNAME_LENGTH || hasControlCharacters(search))) {
      throw invalidRequest(`search must be at most ${MAX_USERNAME_LENGTH} characters without control characters`);
    }
    const rows = await listUsers(deps.db, { limit: limit + 1, after, search });
    const { items, next_after } = page(rows, limit, (user) => user.username);
    res.json({ items: await viewUsers(deps, items), next_after });
  });
  router.all('/users', methodNotAllowed('GET', 'HEAD', 'POST'));

  router.get('/users/:id', async (req, res) => {
    res.json(await viewUser(deps, await requireUser(deps, req.params['id']!)));
  });

  router.patch('/users/:id', async (req, res) => {
    const body = readBody(req.body, UPDATE);
    requireSomeField(body);
    const user = await requireUser(deps, req.params['id']!);
    // An admin locking themselves out by mistake would need the CLI to get back in: refused, and
    // so is any change that leaves them without the admin scope (keepAdminAccess).
    if (body.disabled === true && user.id === actorOf(res)) throw conflict('an admin cannot disable their own account');
    const sessionsEnded = await asAdminAction('user', () =>
      keepAdminAccess(deps.db, actingAdmin(res), (db) => updateAccount(db, user.id, { ...body, ...profileOf(body) }, now())),
    );
    const view = await viewUser(deps, (await findUserById(deps.db, user.id)) ?? user);
    const { email: _email, email_verified: _verified, name: _name, attributes: _attributes, ...access } = body;
    const profile = profileChanged(body);
    auditAdmin(deps, req, res, 'user_updated', {
      user_id: user.id,
      ...access,
      ...(profile.length > 0 ? { profile_changed: profile } : {}),
      ...(body.disabled ? { sessions_ended: sessionsEnded } : {}),
    });
    res.json(view);
  });

  router.delete('/users/:id', async (req, res) => {
    const user = await requireUser(deps, req.params['id']!);
    if (user.id === actorOf(res)) throw conflict('an admin cannot delete their own account');
    // Refresh families go with the user (cascade): every session ends.
    const deleted = await asAdminAction('user', () => keepAdminAccess(deps.db, actingAdmin(res), (db) => deleteUser(db, user.id)));
    if (!deleted) throw notFound('user');
    auditAdmin(deps, req, res, 'user_deleted', { user_id: user.id, username: user.username });
    res.status(204).end();
  });
  router.all('/users/:id', methodNotAllowed('GET', 'HEAD', 'PATCH', 'DELETE'));

  router.post('/users/:id/password', async (req, res) => {
    const body = readBody(req.body, RESET);
    const user = await requireUser(deps, req.params['id']!);
    const generated = body.password === undefined ? generatePassword() : undefined;
    const sessionsEnded = await asAdminAction('user', () =>
      setAccountPassword(deps.db, deps.passwords, user, body.password ?? generated!, now()),
    );
    auditAdmin(deps, req, res, 'user_updated', { user_id: user.id, password_changed: true, sessions_ended: sessionsEnded });
    res.json({ id: user.id, username: user.username, sessions_ended: sessionsEnded, ...(generated ? { password: generated } : {}) });
  });
  router.all('/users/:id/password', methodNotAllowed('POST'));

  return router;
}
