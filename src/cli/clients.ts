import {
  checkNewClient,
  checkRateLimit,
  clientView,
  type NewClientInput,
  registerClient,
  removeClient,
  requireClient,
  rotateClientSecret,
  updateClientSettings,
} from '../auth/client-registry.js';
import { listClients } from '../db/clients.js';
import { type Command, type CommandContext, cliChange, command, print, printTable, readSecretFromStdin, UsageError } from './command.js';

const CLAIM_HELP = 'put claim NAME, taken from the user attribute at PATH (attributes.tenant), in its access tokens (repeatable)';
const RATE_LIMIT_HELP = 'requests per CLIENT_RATE_WINDOW once authenticated, or off for none of its own';
const URI_OPTIONS = {
  'redirect-uri': {
    value: 'URI',
    repeatable: true,
    help: 'where /authorize may send codes: https, http on 127.0.0.1/[::1]/localhost, or com.example.app:/path (repeatable)',
  },
  'post-logout-redirect-uri': { value: 'URI', repeatable: true, help: 'where /logout may send the browser back to (repeatable)' },
} as const;

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
      grant: { value: 'TYPE', repeatable: true, help: 'authorization_code, password, refresh_token or client_credentials (repeatable)' },
      scope: { value: 'S', repeatable: true, help: 'a scope the client may ask for (repeatable)' },
      'default-scope': { value: 'S', repeatable: true, help: 'a scope it gets when it asks for none (repeatable; default: the --scope ones)' },
      audience: { value: 'AUD', repeatable: true, help: 'an audience of its access tokens, besides AUDIENCE (repeatable)' },
      'secret-stdin': { help: 'read the secret from standard input', stdin: true },
      'rate-limit': { value: 'N', parse: rateLimitOption, help: RATE_LIMIT_HELP },
      'roles-claim': { help: "put the user's role names in its access tokens as `roles`" },
      claim: { value: 'NAME=PATH', repeatable: true, parse: claimOption, help: CLAIM_HELP },
      ...URI_OPTIONS,
    },
    // Every rule of registration but the secret's own and a taken id, before the secret is read or a database opened.
    check: ({ options }) => checkNewClient(newClient(options), options['secret-stdin']),
  },
  async ({ options }, ctx) => {
    const secret = suppliedSecret(ctx, options['secret-stdin']);
    const { client, generatedSecret } = await cliChange(
      ctx,
      (trx) => registerClient(trx, { ...newClient(options), secret }, new Date(ctx.clock.now())),
      ({ client: created }) => ({ event: 'client_created', fields: { client_id: created.id, type: created.type, grant_types: created.grant_types } }),
    );
    print(ctx, options.json, {
      client_id: client.id,
      type: client.type,
      grant_types: client.grant_types,
      scopes: client.allowed_scopes,
      ...(client.rate_limit === null ? {} : { rate_limit: client.rate_limit }),
      ...(client.roles_claim ? { roles_claim: true } : {}),
      ...(Object.keys(client.token_claims).length === 0 ? {} : { token_claims: claimsView(client.token_claims, options.json) }),
      ...(client.redirect_uris?.length ? { redirect_uris: client.redirect_uris } : {}),
      ...(client.post_logout_redirect_uris?.length ? { post_logout_redirect_uris: client.post_logout_redirect_uris } : {}),
      ...(generatedSecret ? { client_secret: generatedSecret } : {}),
    });
  },
);

const list = command({ summary: 'list clients with their grants and scopes' }, async ({ options }, ctx) => {
  const clients = await listClients(ctx.db);
  printTable(
    ctx,
    options.json,
    clients
      .map(clientView)
      .map(({ created_at: _created, updated_at: _updated, ...columns }) => ({ ...columns, token_claims: claimsView(columns.token_claims, options.json) })),
  );
});

const remove = command({ summary: 'delete a client', arguments: [{ name: 'client_id' }] }, async ({ args: { client_id: id }, options }, ctx) => {
  await cliChange(
    ctx,
    (trx) => removeClient(trx, id),
    () => ({ event: 'client_deleted', fields: { client_id: id } }),
  );
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
    const supplied = suppliedSecret(ctx, options['secret-stdin']);
    const generated = await cliChange(
      ctx,
      (trx) => rotateClientSecret(trx, id, new Date(ctx.clock.now()), supplied),
      () => ({ event: 'client_secret_rotated', fields: { client_id: id } }),
    );
    print(ctx, options.json, { client_id: id, ...(generated ? { client_secret: generated } : { rotated: true }) });
  },
);

const update = command(
  {
    summary: "change a client's limit, claims or URIs",
    details:
      '--rate-limit: N requests per CLIENT_RATE_WINDOW once the client is authenticated (refresh, revoke, introspection, client credentials); ' +
      'off: none of its own, so CLIENT_RATE_LIMIT applies when it is set, and no limit otherwise. ' +
      "--roles-claim on puts the user's role names in the client's access tokens as `roles`; --claim NAME=PATH adds a claim taken " +
      'from user attributes (PATH is attributes.<name> or attributes.<name>.<name>), --remove-claim NAME takes one away. ' +
      'Each --redirect-uri or --post-logout-redirect-uri list given replaces the registered one. ' +
      'Every replica applies the change at once.',
    arguments: [{ name: 'client_id' }],
    options: {
      'rate-limit': { value: 'N|off', parse: rateLimitOption, help: RATE_LIMIT_HELP },
      'roles-claim': { value: 'on|off', parse: onOff('--roles-claim'), help: "whether its access tokens carry the user's role names as `roles`" },
      claim: { value: 'NAME=PATH', repeatable: true, parse: claimOption, help: CLAIM_HELP },
      'remove-claim': { value: 'NAME', repeatable: true, help: 'stop putting claim NAME in its access tokens (repeatable)' },
      ...URI_OPTIONS,
    },
    check: ({ options }) =>
      options['rate-limit'] === undefined &&
      options['roles-claim'] === undefined &&
      options.claim === undefined &&
      options['remove-claim'] === undefined &&
      options['redirect-uri'] === undefined &&
      options['post-logout-redirect-uri'] === undefined
        ? 'nothing to change: give --rate-limit, --roles-claim, --claim, --remove-claim, --redirect-uri or --post-logout-redirect-uri'
        : undefined,
  },
  async ({ args: { client_id: id }, options }, ctx) => {
    const mapsClaims = options.claim !== undefined || options['remove-claim'] !== undefined;
    // --claim and --remove-claim change the current map member by member.
    const current = mapsClaims ? (await requireClient(ctx.db, id)).token_claims : {};
    const removed = new Set(options['remove-claim'] ?? []);
    const tokenClaims = mapsClaims
      ? Object.fromEntries([...Object.entries(current), ...(options.claim ?? [])].filter(([name]) => !removed.has(name)))
      : undefined;
    const changes = {
      rateLimit: options['rate-limit'],
      rolesClaim: options['roles-claim'],
      tokenClaims,
      redirectUris: options['redirect-uri'],
      postLogoutRedirectUris: options['post-logout-redirect-uri'],
    };
    const changed = [
      ...(options['rate-limit'] === undefined ? [] : ['rate_limit']),
      ...(options['roles-claim'] === undefined ? [] : ['roles_claim']),
      ...(mapsClaims ? ['token_claims'] : []),
      ...(changes.redirectUris === undefined ? [] : ['redirect_uris']),
      ...(changes.postLogoutRedirectUris === undefined ? [] : ['post_logout_redirect_uris']),
    ];
    const client = await cliChange(
      ctx,
      (trx) => updateClientSettings(trx, id, changes, new Date(ctx.clock.now())),
      (updated) => ({
        event: 'client_updated',
        fields: {
          client_id: id,
          changed,
          rate_limit: updated.rate_limit,
          roles_claim: updated.roles_claim,
          token_claims: Object.keys(updated.token_claims),
          redirect_uris: updated.redirect_uris,
          post_logout_redirect_uris: updated.post_logout_redirect_uris,
        },
      }),
    );
    print(ctx, options.json, {
      client_id: id,
      rate_limit: client.rate_limit ?? 'off',
      // The claim settings when they were changed or are in use, as `clients create` shows them.
      ...(options['roles-claim'] !== undefined || client.roles_claim ? { roles_claim: client.roles_claim } : {}),
      ...(mapsClaims || Object.keys(client.token_claims).length > 0 ? { token_claims: claimsView(client.token_claims, options.json) } : {}),
      ...(client.redirect_uris?.length ? { redirect_uris: client.redirect_uris } : {}),
      ...(client.post_logout_redirect_uris?.length ? { post_logout_redirect_uris: client.post_logout_redirect_uris } : {}),
    });
  },
);


/** `--claim NAME=PATH`: the rules of the map (reserved names, paths) are the registry's, checked with the whole map. */
function claimOption(value: string): [string, string] {
  const at = value.indexOf('=');
  if (at < 1) throw new UsageError('--claim takes NAME=PATH, such as tenant=attributes.tenant');
  return [value.slice(0, at), value.slice(at + 1)];
}

function onOff(flag: string): (value: string) => boolean {
  return (value) => {
    if (value !== 'on' && value !== 'off') throw new UsageError(`${flag} takes on or off`);
    return value === 'on';
  };
}

/** The claim map: an object with --json, `name=path` words otherwise. */
function claimsView(claims: Record<string, string>, json: boolean | undefined): Record<string, string> | string[] {
  return json ? claims : Object.entries(claims).map(([name, path]) => `${name}=${path}`);
}

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
  readonly 'roles-claim': boolean;
  readonly claim?: readonly [string, string][] | undefined;
  readonly 'redirect-uri'?: readonly string[] | undefined;
  readonly 'post-logout-redirect-uri'?: readonly string[] | undefined;
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
    rolesClaim: options['roles-claim'],
    tokenClaims: options.claim === undefined ? undefined : Object.fromEntries(options.claim),
    redirectUris: options['redirect-uri'],
    postLogoutRedirectUris: options['post-logout-redirect-uri'],
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
