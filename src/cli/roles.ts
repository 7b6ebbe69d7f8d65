import { audit } from '../audit.js';
import { isScopeToken } from '../auth/scopes.js';
import { normaliseUsername } from '../auth/usernames.js';
import { isUniqueViolation } from '../db/errors.js';
import { addRoleScopes, addUserRole, deleteRole, insertRole, listRoles, removeRoleScopes, removeUserRole, roleExists } from '../db/roles.js';
import { findUserByUsername } from '../db/users.js';
import { type Command, type CommandContext, CommandError, parse, positional, print, printTable, UsageError } from './command.js';

const ROLE_NAME = /^[A-Za-z0-9._:-]{1,64}$/;

function scopesFrom(values: readonly string[]): string[] {
  const bad = values.filter((scope) => !isScopeToken(scope));
  if (bad.length > 0) throw new UsageError(`not a valid scope: ${bad.join(' ')}`);
  return [...new Set(values)];
}

async function requireRole(ctx: CommandContext, name: string): Promise<string> {
  if (!(await roleExists(ctx.db, name))) throw new CommandError(`no such role: ${name}`);
  return name;
}

const create: Command = async (args, ctx) => {
  const { values, positionals } = parse(args, { scope: { type: 'string', multiple: true }, description: { type: 'string' } }, 1);
  const name = positional(positionals, 0, 'role');
  if (!ROLE_NAME.test(name)) throw new UsageError('a role name has 1 to 64 letters, digits or . _ : -');
  const scopes = scopesFrom(values.scope ?? []);
  try {
    await ctx.db.transaction().execute(async (trx) => {
      await insertRole(trx, name, values.description ?? '');
      await addRoleScopes(trx, name, scopes);
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new CommandError(`the role ${name} already exists`);
    throw error;
  }
  audit(ctx.log, 'role_changed', { role: name, actor: 'cli', created: true, scopes });
  print(ctx, values.json, { role: name, scopes });
};

const list: Command = async (args, ctx) => {
  const { values } = parse(args, {});
  printTable(ctx, values.json, (await listRoles(ctx.db)).map((role) => ({ ...role })));
};

const remove: Command = async (args, ctx) => {
  const { values, positionals } = parse(args, {}, 1);
  const name = await requireRole(ctx, positional(positionals, 0, 'role'));
  await deleteRole(ctx.db, name);
  audit(ctx.log, 'role_changed', { role: name, actor: 'cli', deleted: true });
  print(ctx, values.json, { role: name, deleted: true });
};

/** `roles grant <role> <username>`: the user gets the role (and so its scopes). */
const assign =
  (grant: boolean): Command =>
  async (args, ctx) => {
    const { values, positionals } = parse(args, {}, 2);
    const role = await requireRole(ctx, positional(positionals, 0, 'role'));
    const username = positional(positionals, 1, 'username');
    const normalised = normaliseUsername(username);
    const user = normalised === undefined ? undefined : await findUserByUsername(ctx.db, normalised);
    if (user === undefined) throw new CommandError(`no such user: ${username}`);
    await (grant ? addUserRole : removeUserRole)(ctx.db, user.id, role);
    audit(ctx.log, 'role_changed', { role, user_id: user.id, actor: 'cli', [grant ? 'granted' : 'revoked']: true });
    print(ctx, values.json, { role, username: user.username, [grant ? 'granted' : 'revoked']: true });
  };

/** `roles add-scope <role> <scope>...` and `roles remove-scope <role> <scope>...`. */
const changeScopes =
  (add: boolean): Command =>
  async (args, ctx) => {
    const { values, positionals } = parse(args, {}, Infinity);
    const role = await requireRole(ctx, positional(positionals, 0, 'role'));
    const scopes = scopesFrom(positionals.slice(1));
    if (scopes.length === 0) throw new UsageError('name at least one scope');
    await (add ? addRoleScopes : removeRoleScopes)(ctx.db, role, scopes);
    audit(ctx.log, 'role_changed', { role, actor: 'cli', [add ? 'scopes_added' : 'scopes_removed']: scopes });
    const current = (await listRoles(ctx.db)).find((r) => r.name === role);
    print(ctx, values.json, { role, scopes: current?.scopes ?? [] });
  };

export const roleCommands: Record<string, Command> = {
  create,
  list,
  delete: remove,
  grant: assign(true),
  revoke: assign(false),
  'add-scope': changeScopes(true),
  'remove-scope': changeScopes(false),
};
