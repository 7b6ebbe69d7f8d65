import { changeRoleScopes, checkRoleDescription, checkRoleName, createRole, removeRole, requireRole } from '../auth/roles.js';
import { normaliseUsername } from '../auth/usernames.js';
import { addUserRole, listRoles, removeUserRole } from '../db/roles.js';
import { findUserByUsername } from '../db/users.js';
import { type Command, cliChange, command, CommandError, print, printTable } from './command.js';
import { refusing, scopeToken } from './syntax.js';

// The rules (src/auth/roles.ts) are the admin API's too; this file only reads arguments and prints.

const create = command(
  {
    summary: 'create a role: a named set of scopes',
    arguments: [{ name: 'role', parse: refusing(checkRoleName) }],
    options: {
      scope: { value: 'S', repeatable: true, parse: scopeToken, help: 'the role carries scope S (repeatable)' },
      description: { value: 'TEXT', parse: refusing(checkRoleDescription), help: 'what the role is for' },
    },
  },
  async ({ args: { role: name }, options }, ctx) => {
    const role = await cliChange(
      ctx,
      (trx) => createRole(trx, { name, description: options.description, scopes: options.scope }),
      (created) => ({ event: 'role_changed', fields: { role: name, created: true, scopes: created.scopes } }),
    );
    print(ctx, options.json, { role: name, scopes: role.scopes });
  },
);

const list = command({ summary: 'list roles with their scopes' }, async ({ options }, ctx) => {
  printTable(ctx, options.json, (await listRoles(ctx.db)).map((role) => ({ ...role })));
});

const remove = command({ summary: 'delete a role (its users lose its scopes)', arguments: [{ name: 'role' }] }, async ({ args: { role: name }, options }, ctx) => {
  await cliChange(
    ctx,
    (trx) => removeRole(trx, name),
    () => ({ event: 'role_changed', fields: { role: name, deleted: true } }),
  );
  print(ctx, options.json, { role: name, deleted: true });
});

/** `roles grant <role> <username>`: the user gets the role (and so its scopes). */
const assign = (grant: boolean): Command =>
  command(
    {
      summary: grant ? 'give a user the role (and so its scopes)' : 'take the role away from a user',
      arguments: [{ name: 'role' }, { name: 'username' }],
    },
    async ({ args: { role: named, username }, options }, ctx) => {
      const { name: role } = await requireRole(ctx.db, named);
      const normalised = normaliseUsername(username);
      const user = normalised === undefined ? undefined : await findUserByUsername(ctx.db, normalised);
      if (user === undefined) throw new CommandError(`no such user: ${username}`);
      await cliChange(
        ctx,
        (trx) => (grant ? addUserRole : removeUserRole)(trx, user.id, role),
        () => ({ event: 'role_changed', fields: { role, user_id: user.id, [grant ? 'granted' : 'revoked']: true } }),
      );
      print(ctx, options.json, { role, username: user.username, [grant ? 'granted' : 'revoked']: true });
    },
  );

/** `roles add-scope <role> <scope>...` and `roles remove-scope <role> <scope>...`. */
const changeScopes = (add: boolean): Command =>
  command(
    {
      summary: add ? 'add scopes to a role' : 'remove scopes from a role',
      arguments: [{ name: 'role' }, { name: 'scope', variadic: true, parse: scopeToken }],
    },
    async ({ args: { role: name, scope: scopes }, options }, ctx) => {
      const role = await cliChange(
        ctx,
        (trx) => changeRoleScopes(trx, name, scopes, add),
        () => ({ event: 'role_changed', fields: { role: name, [add ? 'scopes_added' : 'scopes_removed']: [...new Set(scopes)] } }),
      );
      print(ctx, options.json, { role: name, scopes: role.scopes });
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
