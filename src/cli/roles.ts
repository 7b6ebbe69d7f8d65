import { audit } from '../audit.js';
import { changeRoleScopes, createRole, removeRole, requireRole } from '../auth/roles.js';
import { normaliseUsername } from '../auth/usernames.js';
import { addUserRole, listRoles, removeUserRole } from '../db/roles.js';
import { findUserByUsername } from '../db/users.js';
import { type Command, command, CommandError, parse, positional, print, printTable, UsageError } from './command.js';

// The rules (src/auth/roles.ts) are the admin API's too; this file only reads arguments and prints.

const create = command(
  {
    usage: '<role> [--scope S]... [--description TEXT]',
    summary: 'create a role: a named set of scopes',
    options: { '--scope S': 'the role carries scope S (repeatable)', '--description TEXT': 'what the role is for' },
  },
  async (args, ctx) => {
    const { values, positionals } = parse(args, { scope: { type: 'string', multiple: true }, description: { type: 'string' } }, 1);
    const name = positional(positionals, 0, 'role');
    const role = await createRole(ctx.db, { name, description: values.description, scopes: values.scope });
    audit(ctx.log, 'role_changed', { role: name, actor: 'cli', created: true, scopes: role.scopes });
    print(ctx, values.json, { role: name, scopes: role.scopes });
  },
);

const list = command({ usage: '', summary: 'list roles with their scopes' }, async (args, ctx) => {
  const { values } = parse(args, {});
  printTable(ctx, values.json, (await listRoles(ctx.db)).map((role) => ({ ...role })));
});

const remove = command({ usage: '<role>', summary: 'delete a role (its users lose its scopes)' }, async (args, ctx) => {
  const { values, positionals } = parse(args, {}, 1);
  const name = positional(positionals, 0, 'role');
  await removeRole(ctx.db, name);
  audit(ctx.log, 'role_changed', { role: name, actor: 'cli', deleted: true });
  print(ctx, values.json, { role: name, deleted: true });
});

/** `roles grant <role> <username>`: the user gets the role (and so its scopes). */
const assign = (grant: boolean): Command =>
  command(
    { usage: '<role> <username>', summary: grant ? 'give a user the role (and so its scopes)' : 'take the role away from a user' },
    async (args, ctx) => {
      const { values, positionals } = parse(args, {}, 2);
      const { name: role } = await requireRole(ctx.db, positional(positionals, 0, 'role'));
      const username = positional(positionals, 1, 'username');
      const normalised = normaliseUsername(username);
      const user = normalised === undefined ? undefined : await findUserByUsername(ctx.db, normalised);
      if (user === undefined) throw new CommandError(`no such user: ${username}`);
      await (grant ? addUserRole : removeUserRole)(ctx.db, user.id, role);
      audit(ctx.log, 'role_changed', { role, user_id: user.id, actor: 'cli', [grant ? 'granted' : 'revoked']: true });
      print(ctx, values.json, { role, username: user.username, [grant ? 'granted' : 'revoked']: true });
    },
  );

/** `roles add-scope <role> <scope>...` and `roles remove-scope <role> <scope>...`. */
const changeScopes = (add: boolean): Command =>
  command(
    { usage: '<role> <scope>...', summary: add ? 'add scopes to a role' : 'remove scopes from a role' },
    async (args, ctx) => {
      const { values, positionals } = parse(args, {}, Infinity);
      const name = positional(positionals, 0, 'role');
      const scopes = positionals.slice(1);
      if (scopes.length === 0) throw new UsageError('name at least one scope');
      const role = await changeRoleScopes(ctx.db, name, scopes, add);
      audit(ctx.log, 'role_changed', { role: name, actor: 'cli', [add ? 'scopes_added' : 'scopes_removed']: [...new Set(scopes)] });
      print(ctx, values.json, { role: name, scopes: role.scopes });
    },
  );

export const roleCommands: Record<string, Command> = {
  create,
  list,
  delete: remove,
  grant: assign(true),
  revoke: assign(false),
  'add-scope': changeScopes(true),
  'remove-scope': changeScopes(false),
};
