import { randomBytes } from 'node:crypto';
import { audit } from '../audit.js';
import { createAccount, setAccountPassword } from '../auth/accounts.js';
import { isScopeToken } from '../auth/scopes.js';
import { normaliseUsername } from '../auth/usernames.js';
import { addUserRole } from '../db/roles.js';
import type { User } from '../db/schema.js';
import {
  deleteUser,
  findDirectUserScopes,
  findUserByUsername,
  findUserRoles,
  grantUserScopes,
  listUsers,
  revokeUserScopes,
  setUserDisabled,
} from '../db/users.js';
import { type Command, type CommandContext, CommandError, parse, positional, print, printTable, readSecretFromStdin, UsageError } from './command.js';

const MAX_LIST_LIMIT = 1000;

/** A generated password: 128 bits, printed once. */
function generatePassword(): string {
  return randomBytes(16).toString('base64url');
}

async function requireUser(ctx: CommandContext, username: string): Promise<User> {
  const normalised = normaliseUsername(username);
  const user = normalised === undefined ? undefined : await findUserByUsername(ctx.db, normalised);
  if (user === undefined) throw new CommandError(`no such user: ${username}`);
  return user;
}

function scopesFrom(values: readonly string[]): string[] {
  const bad = values.filter((scope) => !isScopeToken(scope));
  if (bad.length > 0) throw new UsageError(`not a valid scope: ${bad.join(' ')}`);
  return [...new Set(values)];
}

const now = (ctx: CommandContext) => new Date(ctx.clock.now());

const create: Command = async (args, ctx) => {
  const { values, positionals } = parse(args, {
    'password-stdin': { type: 'boolean' },
    scope: { type: 'string', multiple: true },
    role: { type: 'string', multiple: true },
  });
  const generated = values['password-stdin'] ? undefined : generatePassword();
  const password = generated ?? readSecretFromStdin(ctx, '--password-stdin');
  const scopes = scopesFrom(values.scope ?? []);
  const user = await createAccount(ctx.db, ctx.passwords, { username: positional(positionals, 0, 'username'), password, scopes }, now(ctx));
  for (const role of values.role ?? []) await addUserRole(ctx.db, user.id, role);
  audit(ctx.log, 'user_created', { user_id: user.id, actor: 'cli', scopes, roles: values.role ?? [] });
  print(ctx, values.json, { id: user.id, username: user.username, ...(generated ? { password: generated } : {}) });
};

const list: Command = async (args, ctx) => {
  const { values } = parse(args, { limit: { type: 'string' }, after: { type: 'string' } });
  const limit = Number(values.limit ?? 100);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) throw new UsageError(`--limit must be 1 to ${MAX_LIST_LIMIT}`);
  const users = await listUsers(ctx.db, { limit, after: values.after });
  const rows = await Promise.all(
    users.map(async (user) => ({
      id: user.id,
      username: user.username,
      disabled: user.disabled,
      roles: await findUserRoles(ctx.db, user.id),
      scopes: await findDirectUserScopes(ctx.db, user.id),
      created_at: user.created_at,
    })),
  );
  printTable(ctx, values.json, rows);
};

const setDisabled =
  (disabled: boolean): Command =>
  async (args, ctx) => {
    const { values, positionals } = parse(args, {});
    const user = await requireUser(ctx, positional(positionals, 0, 'username'));
    await setUserDisabled(ctx.db, user.id, disabled, now(ctx));
    audit(ctx.log, 'user_updated', { user_id: user.id, actor: 'cli', disabled });
    print(ctx, values.json, { id: user.id, username: user.username, disabled });
  };

const remove: Command = async (args, ctx) => {
  const { values, positionals } = parse(args, {});
  const user = await requireUser(ctx, positional(positionals, 0, 'username'));
  await deleteUser(ctx.db, user.id);
  audit(ctx.log, 'user_deleted', { user_id: user.id, actor: 'cli' });
  print(ctx, values.json, { id: user.id, username: user.username, deleted: true });
};

const setPassword: Command = async (args, ctx) => {
  const { values, positionals } = parse(args, { 'password-stdin': { type: 'boolean' } });
  const user = await requireUser(ctx, positional(positionals, 0, 'username'));
  const generated = values['password-stdin'] ? undefined : generatePassword();
  await setAccountPassword(ctx.db, ctx.passwords, user, generated ?? readSecretFromStdin(ctx, '--password-stdin'), now(ctx));
  audit(ctx.log, 'user_updated', { user_id: user.id, actor: 'cli', password_changed: true });
  print(ctx, values.json, { id: user.id, username: user.username, ...(generated ? { password: generated } : {}) });
};

const changeScopes =
  (grant: boolean): Command =>
  async (args, ctx) => {
    const { values, positionals } = parse(args, {});
    const user = await requireUser(ctx, positional(positionals, 0, 'username'));
    const scopes = scopesFrom(positionals.slice(1));
    if (scopes.length === 0) throw new UsageError('name at least one scope');
    await (grant ? grantUserScopes : revokeUserScopes)(ctx.db, user.id, scopes);
    audit(ctx.log, 'user_updated', { user_id: user.id, actor: 'cli', [grant ? 'scopes_granted' : 'scopes_revoked']: scopes });
    print(ctx, values.json, { id: user.id, username: user.username, scopes: await findDirectUserScopes(ctx.db, user.id) });
  };

export const userCommands: Record<string, Command> = {
  create,
  list,
  disable: setDisabled(true),
  enable: setDisabled(false),
  delete: remove,
  'set-password': setPassword,
  grant: changeScopes(true),
  revoke: changeScopes(false),
};
