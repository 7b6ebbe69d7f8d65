import { checkProfile, createAccount, setAccountDisabled, setAccountPassword, updateAccount } from '../auth/accounts.js';
import { generatePassword } from '../auth/passwords.js';
import { hashAhead } from '../auth/prehash.js';
import { normaliseUsername } from '../auth/usernames.js';
import type { User } from '../db/schema.js';
import {
  deleteUser,
  findDirectUserScopes,
  findUserByUsername,
  findUserRoles,
  grantUserScopes,
  listUsers,
  revokeUserScopes,
} from '../db/users.js';
import { endUserBrowserSessions } from '../db/browser-sessions.js';
import { revokeUserFamilies } from '../db/refresh-families.js';
import { type Command, type CommandContext, cliChange, command, CommandError, print, printTable, readSecretFromStdin, UsageError } from './command.js';
import { checkProfileOptions, PROFILE_OPTIONS, PROFILE_UPDATE_OPTIONS, profileFromOptions, profileView } from './profile-options.js';
import { scopeToken } from './syntax.js';

// The account rules (src/auth/accounts.ts) are the admin API's too; this file only reads arguments and prints.

const MAX_LIST_LIMIT = 1000;

async function requireUser(ctx: CommandContext, username: string): Promise<User> {
  const normalised = normaliseUsername(username);
  const user = normalised === undefined ? undefined : await findUserByUsername(ctx.db, normalised);
  if (user === undefined) throw new CommandError(`no such user: ${username}`);
  return user;
}

const now = (ctx: CommandContext) => new Date(ctx.clock.now());

const SUPPLIED_OR_GENERATED = 'The password is read from standard input with --password-stdin; otherwise one is generated and printed once.';

const create = command(
  {
    summary: 'create a user with a generated or supplied password',
    details: SUPPLIED_OR_GENERATED,
    arguments: [{ name: 'username' }],
    options: {
      'password-stdin': { help: 'read the password from standard input', stdin: true },
      scope: { value: 'S', repeatable: true, parse: scopeToken, help: 'grant scope S to the user directly (repeatable)' },
      role: { value: 'R', repeatable: true, help: 'give the user role R (repeatable)' },
      ...PROFILE_OPTIONS,
    },
    // A bad email, name or attributes is a usage error, found before stdin is read or a database opened.
    check: ({ options }) =>
      checkProfileOptions(options) ??
      (options['email-verified'] && options.email === undefined ? '--email-verified needs --email' : checkProfile(profileFromOptions(options))),
  },
  async ({ args, options }, ctx) => {
    const generated = options['password-stdin'] ? undefined : generatePassword();
    const password = generated ?? readSecretFromStdin(ctx, '--password-stdin');
    const scopes = [...new Set(options.scope ?? [])];
    const roles = [...new Set(options.role ?? [])];
    const profile = profileFromOptions(options);
    // Hashed before the transaction: an embedded server's one connection is not held while Argon2 runs.
    const passwords = await hashAhead(ctx.passwords, password, normaliseUsername(args.username));
    const user = await cliChange(
      ctx,
      (trx) => createAccount(trx, passwords, { username: args.username, password, scopes, roles, ...profile }, now(ctx)),
      (created) => ({ event: 'user_created', fields: { user_id: created.id, scopes, roles, profile: changedFields(profile) } }),
    );
    print(ctx, options.json, {
      id: user.id,
      username: user.username,
      ...(user.email === null && user.name === null ? {} : { email: user.email, email_verified: user.email_verified, name: user.name }),
      ...(generated ? { password: generated } : {}),
    });
  },
);

/** Which profile fields a change names (the audit line says which, never the values: personal data). */
function changedFields(profile: object): string[] {
  const names: Record<string, string> = { email: 'email', emailVerified: 'email_verified', name: 'name', attributes: 'attributes' };
  return Object.entries(profile)
    .filter(([, value]) => value !== undefined)
    .map(([key]) => names[key]!)
    .sort();
}

const update = command(
  {
    summary: "change a user's email, name or attributes",
    details:
      'A new email is unverified unless --email-verified is given too. --attribute changes one attribute and keeps the others; ' +
      '--attributes-json replaces them all.',
    arguments: [{ name: 'username' }],
    options: PROFILE_UPDATE_OPTIONS,
    check: ({ options }) => {
      const problem = checkProfileOptions(options);
      if (problem !== undefined) return problem;
      const profile = profileFromOptions(options);
      if (changedFields(profile).length === 0) return 'nothing to change: give --email, --name, --attribute or another option';
      return checkProfile(profile);
    },
  },
  async ({ args, options }, ctx) => {
    const user = await requireUser(ctx, args.username);
    const profile = profileFromOptions(options, user.attributes);
    await cliChange(
      ctx,
      (trx) => updateAccount(trx, user.id, profile, now(ctx)),
      () => ({ event: 'user_updated', fields: { user_id: user.id, profile_changed: changedFields(profile) } }),
    );
    const updated = await requireUser(ctx, args.username);
    print(ctx, options.json, { id: user.id, username: user.username, ...profileView(updated, options.json) });
  },
);

const list = command(
  {
    summary: 'list users with their roles and direct scopes',
    details: 'In username order, a page at a time.',
    options: {
      limit: { value: 'N', parse: limitOption, help: `at most N users, 1 to ${MAX_LIST_LIMIT} (default 100)` },
      after: { value: 'USERNAME', help: 'start after this username (the last one of the previous page)' },
    },
  },
  async ({ options }, ctx) => {
    const users = await listUsers(ctx.db, { limit: options.limit ?? 100, after: options.after });
    const rows = await Promise.all(
      users.map(async (user) => ({
        id: user.id,
        username: user.username,
        disabled: user.disabled,
        email: user.email,
        roles: await findUserRoles(ctx.db, user.id),
        scopes: await findDirectUserScopes(ctx.db, user.id),
        created_at: user.created_at,
      })),
    );
    printTable(ctx, options.json, rows);
  },
);

function limitOption(value: string): number {
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : 0;
  if (limit < 1 || limit > MAX_LIST_LIMIT) throw new UsageError(`--limit must be 1 to ${MAX_LIST_LIMIT}`);
  return limit;
}

const setDisabled = (disabled: boolean): Command =>
  command(
    { summary: disabled ? "disable a user and end the user's sessions" : 'enable a disabled user again', arguments: [{ name: 'username' }] },
    async ({ args, options }, ctx) => {
      const user = await requireUser(ctx, args.username);
      const sessionsEnded = await cliChange(
        ctx,
        (trx) => setAccountDisabled(trx, user.id, disabled, now(ctx)),
        (ended) => ({ event: 'user_updated', fields: { user_id: user.id, disabled, sessions_ended: ended } }),
      );
      print(ctx, options.json, { id: user.id, username: user.username, disabled, ...(disabled ? { sessions_ended: sessionsEnded } : {}) });
    },
  );

const remove = command({ summary: 'delete a user', arguments: [{ name: 'username' }] }, async ({ args, options }, ctx) => {
  const user = await requireUser(ctx, args.username);
  await cliChange(
    ctx,
    (trx) => deleteUser(trx, user.id),
    (deleted) => (deleted ? { event: 'user_deleted', fields: { user_id: user.id, username: user.username } } : undefined),
  );
  print(ctx, options.json, { id: user.id, username: user.username, deleted: true });
});

const setPassword = command(
  {
    summary: "set a user's password and end the user's sessions",
    details: SUPPLIED_OR_GENERATED,
    arguments: [{ name: 'username' }],
    options: { 'password-stdin': { help: 'read the new password from standard input', stdin: true } },
  },
  async ({ args, options }, ctx) => {
    const user = await requireUser(ctx, args.username);
    const generated = options['password-stdin'] ? undefined : generatePassword();
    const password = generated ?? readSecretFromStdin(ctx, '--password-stdin');
    const passwords = await hashAhead(ctx.passwords, password, user.username);
    const sessionsEnded = await cliChange(
      ctx,
      (trx) => setAccountPassword(trx, passwords, user, password, now(ctx)),
      (ended) => ({ event: 'user_updated', fields: { user_id: user.id, password_changed: true, sessions_ended: ended } }),
    );
    print(ctx, options.json, { id: user.id, username: user.username, sessions_ended: sessionsEnded, ...(generated ? { password: generated } : {}) });
  },
);

/** Logout everywhere: every session of the user ends; its access tokens stop working at Tessera at once, elsewhere within ACCESS_TOKEN_TTL. */
const logout = command(
  {
    summary: 'end every session of the user',
    details: 'Its access tokens stop working at once at Tessera itself; services that verify them offline accept them until they expire (ACCESS_TOKEN_TTL).',
    arguments: [{ name: 'username' }],
  },
  async ({ args, options }, ctx) => {
    const user = await requireUser(ctx, args.username);
    const sessionsEnded = await cliChange(
      ctx,
      async (trx) => {
        const ended = await revokeUserFamilies(trx, user.id, 'logout', now(ctx));
        await endUserBrowserSessions(trx, user.id, now(ctx));
        return ended;
      },
      (ended) => ({ event: 'user_logged_out', fields: { user_id: user.id, sessions_ended: ended } }),
    );
    print(ctx, options.json, { id: user.id, username: user.username, sessions_ended: sessionsEnded });
  },
);

const changeScopes = (grant: boolean): Command =>
  command(
    {
      summary: grant ? 'grant scopes to a user directly' : 'revoke scopes granted to a user directly',
      arguments: [{ name: 'username' }, { name: 'scope', variadic: true, parse: scopeToken }],
    },
    async ({ args, options }, ctx) => {
      const user = await requireUser(ctx, args.username);
      const scopes = [...new Set(args.scope)];
      await cliChange(
        ctx,
        (trx) => (grant ? grantUserScopes : revokeUserScopes)(trx, user.id, scopes),
        () => ({ event: 'user_updated', fields: { user_id: user.id, [grant ? 'scopes_granted' : 'scopes_revoked']: scopes } }),
      );
      print(ctx, options.json, { id: user.id, username: user.username, scopes: await findDirectUserScopes(ctx.db, user.id) });
    },
  );

export const userCommands: Record<string, Command> = {
  create,
  update,
  list,
  disable: setDisabled(true),
  enable: setDisabled(false),
  delete: remove,
  'set-password': setPassword,
  logout,
  grant: changeScopes(true),
  revoke: changeScopes(false),
};
