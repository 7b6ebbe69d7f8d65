import { audit } from '../audit.js';
import {
  checkNewClient,
  checkRateLimit,
  clientView,
  type NewClientInput,
  registerClient,
  removeClient,
  rotateClientSecret,
  updateClientSettings,
} from '../auth/client-registry.js';
import { listClients } from '../db/clients.js';
import { type Command, type CommandContext, command, print, printTable, readSecretFromStdin, UsageError } from './command.js';

const RATE_LIMIT_HELP = 'requests per CLIENT_RATE_WINDOW once authenticated, or off for none of its own';

/** The rules (src/auth/client-registry.ts) are the admin API's too; this file only reads options and prints. */
const suppliedSecret = (ctx: CommandContext, wanted: boolean | undefined) => (wanted ? readSecretFromStdin(ctx, '--secret-stdin') : undefined);

const create = command(
  {
    summary: 'register a client',
    details:
      "A confidential client's secret is read from standard input with --secret-stdin; otherwise one is generated and printed once. " +
      'Unless --grant says otherwise, a confidential client gets the password and refresh_token grants.',
    options: {
      id: { value: 'ID', help: 'the client_id (default: a random one)' },
      name: { value: 'NAME', help: 'a name to show (default: the client_id)' },
      public: { help: 'a public client: no secret; name its grants with --grant' },
      grant: { value: 'TYPE', repeatable: true, help: 'password, refresh_token or client_credentials (repeatable)' },
      scope: { value: 'S', repeatable: true, help: 'a scope the client may ask for (repeatable)' },
      'default-scope': { value: 'S', repeatable: true, help: 'a scope it gets when it asks for none (repeatable; default: the --scope ones)' },
      audience: { value: 'AUD', repeatable: true, help: 'an audience of its access tokens, besides AUDIENCE (repeatable)' },
      'secret-stdin': { help: 'read the secret from standard input', stdin: true },
      'rate-limit': { value: 'N', parse: rateLimitOption, help: RATE_LIMIT_HELP },
    },
    // Every rule of registration but the secret's own and a taken id, before the secret is read or a database opened.
    check: ({ options }) => checkNewClient(newClient(options), options['secret-stdin']),
  },
  async ({ options }, ctx) => {
    const secret = suppliedSecret(ctx, options['secret-stdin']);
    const { client, generatedSecret } = await registerClient(ctx.db, { ...newClient(options), secret }, new Date(ctx.clock.now()));
    audit(ctx.log, 'client_created', { client_id: client.id, actor: 'cli', type: client.type, grant_types: client.grant_types });
    print(ctx, options.json, {
      client_id: client.id,
      type: client.type,
      grant_types: client.grant_types,
      scopes: client.allowed_scopes,
      ...(client.rate_limit === null ? {} : { rate_limit: client.rate_limit }),
      ...(generatedSecret ? { client_secret: generatedSecret } : {}),
    });
  },
);

const list = command({ summary: 'list clients with their grants and scopes' }, async ({ options }, ctx) => {
  const clients = await listClients(ctx.db);
  printTable(
    ctx,
    options.json,
    clients.map(clientView).map(({ created_at: _created, updated_at: _updated, ...columns }) => columns),
  );
});

const remove = command({ summary: 'delete a client', arguments: [{ name: 'client_id' }] }, async ({ args: { client_id: id }, options }, ctx) => {
  await removeClient(ctx.db, id);
  audit(ctx.log, 'client_deleted', { client_id: id, actor: 'cli' });
  print(ctx, options.json, { client_id: id, deleted: true });
});

const rotateSecret = command(
  {
    summary: "replace a confidential client's secret",
    details: 'The old secret stops working at once. The new one is read from standard input with --secret-stdin; otherwise one is generated and printed once.',
    arguments: [{ name: 'client_id' }],
    options: { 'secret-stdin': { help: 'read the new secret from standard input', stdin: true } },
  },
  async ({ args: { client_id: id }, options }, ctx) => {
    const generated = await rotateClientSecret(ctx.db, id, new Date(ctx.clock.now()), suppliedSecret(ctx, options['secret-stdin']));
    audit(ctx.log, 'client_secret_rotated', { client_id: id, actor: 'cli' });
    print(ctx, options.json, { client_id: id, ...(generated ? { client_secret: generated } : { rotated: true }) });
  },
);

const update = command(
  {
    summary: "change a client's own rate limit",
    details:
      'N requests per CLIENT_RATE_WINDOW once the client is authenticated (refresh, revoke, introspection, client credentials). ' +
      'off: none of its own, so CLIENT_RATE_LIMIT applies when it is set, and no limit otherwise. Every replica applies the change at once.',
    arguments: [{ name: 'client_id' }],
    options: { 'rate-limit': { value: 'N|off', required: true, parse: rateLimitOption, help: RATE_LIMIT_HELP } },
  },
  async ({ args: { client_id: id }, options }, ctx) => {
    const client = await updateClientSettings(ctx.db, id, { rateLimit: options['rate-limit'] }, new Date(ctx.clock.now()));
    audit(ctx.log, 'client_updated', { client_id: id, actor: 'cli', changed: ['rate_limit'], rate_limit: client.rate_limit });
    print(ctx, options.json, { client_id: id, rate_limit: client.rate_limit ?? 'off' });
  },
);

/** The client `clients create` describes, but its secret. */
function newClient(options: {
  readonly id?: string | undefined;
  readonly name?: string | undefined;
  readonly public: boolean;
  readonly grant?: readonly string[] | undefined;
  readonly scope?: readonly string[] | undefined;
  readonly 'default-scope'?: readonly string[] | undefined;
  readonly audience?: readonly string[] | undefined;
  readonly 'rate-limit'?: number | null | undefined;
}): Omit<NewClientInput, 'secret'> {
  return {
    id: options.id,
    name: options.name,
    type: options.public ? 'public' : 'confidential',
    grantTypes: options.grant,
    scopes: options.scope,
    defaultScopes: options['default-scope'],
    audience: options.audience,
    rateLimit: options['rate-limit'],
  };
}

/** `--rate-limit N`, or `off` (null: none of its own). */
function rateLimitOption(value: string): number | null {
  if (value === 'off') return null;
  if (!/^\d{1,10}$/.test(value)) throw new UsageError('--rate-limit takes a whole number of requests per CLIENT_RATE_WINDOW, or off');
  const problem = checkRateLimit(Number(value));
  if (problem !== undefined) throw new UsageError(problem);
  return Number(value);
}

export const clientCommands: Record<string, Command> = { create, update, list, delete: remove, 'rotate-secret': rotateSecret };
