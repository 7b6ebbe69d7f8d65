import { Router } from 'express';
import { createAccount, setAccountPassword, updateAccount } from '../../auth/accounts.js';
import { keepAdminAccess } from '../../auth/admin-access.js';
import { generatePassword, hasControlCharacters } from '../../auth/passwords.js';
import { hashAhead } from '../../auth/prehash.js';
import { foldUsername, MAX_USERNAME_LENGTH, normaliseUsername } from '../../auth/usernames.js';
import type { User } from '../../db/schema.js';
import { deleteUser, findAccessOfUsers, findUserById, listUsers } from '../../db/users.js';
import type { Deps } from '../../deps.js';
import { isUuid } from '../../ids.js';
import { invalidRequest } from '../../oauth/errors.js';
import { methodNotAllowed } from '../errors.js';
import { actingAdmin, actorOf, adminChange } from './auth.js';
import { asAdminAction, conflict, notFound } from './errors.js';
import { checkRoleName } from '../../auth/roles.js';
import { CURSOR_KEY_PURPOSE, cursorPage } from '../../cursor.js';
import {
  type Body,
  readBody,
  readBooleanParameter,
  readCursor,
  readLimit,
  readQuery,
  readTimeParameter,
  refuseBothCursors,
  requireSomeField,
} from './input.js';

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
  const cursorKeys = deps.keyRing.derive(CURSOR_KEY_PURPOSE);

  router.post('/users', async (req, res) => {
    const body = readBody(req.body, CREATE);
    const generated = body.password === undefined ? generatePassword() : undefined;
    const password = body.password ?? generated!;
    const passwords = await hashAhead(deps.passwords, password, normaliseUsername(body.username));
    const user = await asAdminAction('user', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => createAccount(trx, passwords, { ...body, ...profileOf(body), password }, now()),
        (created) => ({
          event: 'user_created',
          fields: { user_id: created.id, scopes: sortedSet(body.scopes), roles: sortedSet(body.roles), profile: profileChanged(body) },
        }),
      ),
    );
    const view = await viewUser(deps, user);
    res.status(201).location(`/admin/users/${user.id}`).json({ ...view, ...(generated ? { password: generated } : {}) });
  });

  router.get('/users', async (req, res) => {
    const query = readQuery(req, ['limit', 'cursor', 'after', 'search', 'disabled', 'role', 'created_before', 'created_after']);
    const limit = readLimit(query['limit']);
    refuseBothCursors(query);
    const after = readCursor(cursorKeys, 'users', query['cursor'])?.[0] ?? query['after'];
    if (after !== undefined && (after === '' || [...after].length > MAX_USERNAME_LENGTH || hasControlCharacters(after))) {
      throw invalidRequest('after must be the next_after of a previous page');
    }
    const role = query['role'];
    if (role !== undefined && checkRoleName(role) !== undefined) throw invalidRequest('role must be a role name: 1 to 64 letters, digits or . _ : -');
    // Usernames are stored normalised, so the search is folded the same way: `ALICE` finds alice.
    const search = query['search'] === undefined ? undefined : foldUsername(query['search']);
    if (search !== undefined && ([...search].length > MAX_USERNAME_LENGTH || hasControlCharacters(search))) {
      throw invalidRequest(`search must be at most ${MAX_USERNAME_LENGTH} characters without control characters`);
    }
    const rows = await listUsers(deps.db, {
      limit: limit + 1,
      after,
      search,
      disabled: readBooleanParameter('disabled', query['disabled']),
      role,
      createdBefore: readTimeParameter('created_before', query['created_before']),
      createdAfter: readTimeParameter('created_after', query['created_after']),
    });
    const { items, next_cursor } = cursorPage(cursorKeys, 'users', rows, limit, (user) => [user.username]);
    // next_after: the username form of the first release of this list, for its clients.
    res.json({ items: await viewUsers(deps, items), next_cursor, next_after: next_cursor === null ? null : items[items.length - 1]!.username });
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
    const { email: _email, email_verified: _verified, name: _name, attributes: _attributes, ...access } = body;
    const profile = profileChanged(body);
    await asAdminAction('user', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => keepAdminAccess(trx, actingAdmin(res), (db) => updateAccount(db, user.id, { ...body, ...profileOf(body) }, now())),
        (sessionsEnded) => ({
          event: 'user_updated',
          fields: {
            user_id: user.id,
            ...access,
            ...(profile.length > 0 ? { profile_changed: profile } : {}),
            ...(body.disabled ? { sessions_ended: sessionsEnded } : {}),
          },
        }),
      ),
    );
    const view = await viewUser(deps, (await findUserById(deps.db, user.id)) ?? user);
    res.json(view);
  });

  router.delete('/users/:id', async (req, res) => {
    const user = await requireUser(deps, req.params['id']!);
    if (user.id === actorOf(res)) throw conflict('an admin cannot delete their own account');
    // Refresh families go with the user (cascade): every session ends.
    const deleted = await asAdminAction('user', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => keepAdminAccess(trx, actingAdmin(res), (db) => deleteUser(db, user.id)),
        (done) => (done ? { event: 'user_deleted', fields: { user_id: user.id, username: user.username } } : undefined),
      ),
    );
    if (!deleted) throw notFound('user');
    res.status(204).end();
  });
  router.all('/users/:id', methodNotAllowed('GET', 'HEAD', 'PATCH', 'DELETE'));

  router.post('/users/:id/password', async (req, res) => {
    const body = readBody(req.body, RESET);
    const user = await requireUser(deps, req.params['id']!);
    const generated = body.password === undefined ? generatePassword() : undefined;
    const password = body.password ?? generated!;
    const passwords = await hashAhead(deps.passwords, password, user.username);
    const sessionsEnded = await asAdminAction('user', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => setAccountPassword(trx, passwords, user, password, now()),
        (ended) => ({ event: 'user_updated', fields: { user_id: user.id, password_changed: true, sessions_ended: ended } }),
      ),
    );
    res.json({ id: user.id, username: user.username, sessions_ended: sessionsEnded, ...(generated ? { password: generated } : {}) });
  });
  router.all('/users/:id/password', methodNotAllowed('POST'));

  return router;
}

/** A list from the request as the user will have it: each once, sorted (as the view shows it). */
function sortedSet(values: readonly string[] | undefined): string[] {
  return [...new Set(values ?? [])].sort();
}
