import { audit } from '../audit.js';
import { clientView, registerClient, removeClient, rotateClientSecret, updateClientSettings } from '../auth/client-registry.js';
import { listClients } from '../db/clients.js';
import { type Command, type CommandContext, command, parse, positional, print, printTable, readSecretFromStdin, UsageError } from './command.js';

const RATE_LIMIT_HELP = 'requests per CLIENT_RATE_WINDOW once authenticated, or off for none of its own';

/** The rules (src/auth/client-registry.ts) are the admin API's too; this file only reads options and prints. */
const suppliedSecret = (ctx: CommandContext, wanted: boolean | undefined) => (wanted ? readSecretFromStdin(ctx, '--secret-stdin') : undefined);

const create = command(
  {
    usage: '[--id ID] [--name NAME] [--public] [--grant TYPE]... [--scope S]... [--default-scope S]... [--audience AUD]... [--secret-stdin] [--rate-limit N]',
    summary: 'register a client',
    details:
      "A confidential client's secret is read from standard input with --secret-stdin; otherwise one is generated and printed once. " +
      'Unless --grant says otherwise, a confidential client gets the password and refresh_token grants.',
    options: {
      '--id ID': 'the client_id (default: a random one)',
      '--name NAME': 'a name to show (default: the client_id)',
      '--public': 'a public client: no secret; name its grants with --grant',
      '--grant TYPE': 'password, refresh_token or client_credentials (repeatable)',
      '--scope S': 'a scope the client may ask for (repeatable)',
      '--default-scope S': 'a scope it gets when it asks for none (repeatable; default: the --scope ones)',
      '--audience AUD': 'an audience of its access tokens, besides AUDIENCE (repeatable)',
      '--secret-stdin': 'read the secret from standard input',
      '--rate-limit N': RATE_LIMIT_HELP,
    },
  },
  async (args, ctx) => {
    const { values } = parse(args, {
      id: { type: 'string' },
      name: { type: 'string' },
      public: { type: 'boolean' },
      grant: { type: 'string', multiple: true },
      scope: { type: 'string', multiple: true },
      'default-scope': { type: 'string', multiple: true },
      audience: { type: 'string', multiple: true },
      'secret-stdin': { type: 'boolean' },
      'rate-limit': { type: 'string' },
    });
    const { client, generatedSecret } = await registerClient(
      ctx.db,
      {
        id: values.id,
        name: values.name,
        type: values.public ? 'public' : 'confidential',
        grantTypes: values.grant,
        scopes: values.scope,
        defaultScopes: values['default-scope'],
        audience: values.audience,
        rateLimit: rateLimitOption(values['rate-limit']),
        secret: suppliedSecret(ctx, values['secret-stdin']),
      },
      new Date(ctx.clock.now()),
    );
    audit(ctx.log, 'client_created', { client_id: client.id, actor: 'cli', type: client.type, grant_types: client.grant_types });
    print(ctx, values.json, {
      client_id: client.id,
      type: client.type,
      grant_types: client.grant_types,
      scopes: client.allowed_scopes,
      ...(client.rate_limit === null ? {} : { rate_limit: client.rate_limit }),
      ...(generatedSecret ? { client_secret: generatedSecret } : {}),
    });
  },
);

const list = command({ usage: '', summary: 'list clients with their grants and scopes' }, async (args, ctx) => {
  const { values } = parse(args, {});
  const clients = await listClients(ctx.db);
  printTable(
    ctx,
    values.json,
    clients.map(clientView).map(({ created_at: _created, updated_at: _updated, ...columns }) => columns),
  );
});

const remove = command({ usage: '<client_id>', summary: 'delete a client' }, async (args, ctx) => {
  const { values, positionals } = parse(args, {}, 1);
  const id = positional(positionals, 0, 'client_id');
  await removeClient(ctx.db, id);
  audit(ctx.log, 'client_deleted', { client_id: id, actor: 'cli' });
  print(ctx, values.json, { client_id: id, deleted: true });
});

const rotateSecret = command(
  {
    usage: '<client_id> [--secret-stdin]',
    summary: "replace a confidential client's secret",
    details: 'The old secret stops working at once. The new one is read from standard input with --secret-stdin; otherwise one is generated and printed once.',
    options: { '--secret-stdin': 'read the new secret from standard input' },
  },
  async (args, ctx) => {
    const { values, positionals } = parse(args, { 'secret-stdin': { type: 'boolean' } }, 1);
    const id = positional(positionals, 0, 'client_id');
    const generated = await rotateClientSecret(ctx.db, id, new Date(ctx.clock.now()), suppliedSecret(ctx, values['secret-stdin']));
    audit(ctx.log, 'client_secret_rotated', { client_id: id, actor: 'cli' });
    print(ctx, values.json, { client_id: id, ...(generated ? { client_secret: generated } : { rotated: true }) });
  },
);

const update = command(
  {
    usage: '<client_id> --rate-limit N|off',
    summary: "change a client's own rate limit",
    details:
      'N requests per CLIENT_RATE_WINDOW once the client is authenticated (refresh, revoke, introspection, client credentials). ' +
      'off: none of its own, so CLIENT_RATE_LIMIT applies when it is set, and no limit otherwise. Every replica applies the change at once.',
    options: { '--rate-limit N|off': RATE_LIMIT_HELP },
  },
  async (args, ctx) => {
    const { values, positionals } = parse(args, { 'rate-limit': { type: 'string' } }, 1);
    const id = positional(positionals, 0, 'client_id');
    if (values['rate-limit'] === undefined) throw new UsageError('nothing to change: name --rate-limit N|off');
    const client = await updateClientSettings(ctx.db, id, { rateLimit: rateLimitOption(values['rate-limit']) }, new Date(ctx.clock.now()));
    audit(ctx.log, 'client_updated', { client_id: id, actor: 'cli', changed: ['rate_limit'], rate_limit: client.rate_limit });
    print(ctx, values.json, { client_id: id, rate_limit: client.rate_limit ?? 'off' });
  },
);

/** `--rate-limit N` or `off` (null: none of its own); absent: undefined. */
function rateLimitOption(value: string | undefined): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === 'off') return null;
  if (!/^\d{1,10}$/.test(value)) throw new UsageError('--rate-limit takes a whole number of requests per CLIENT_RATE_WINDOW, or off');
  return Number(value);
}

export const clientCommands: Record<string, Command> = { create, update, list, delete: remove, 'rotate-secret': rotateSecret };
