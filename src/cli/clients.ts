import { randomBytes } from 'node:crypto';
import { audit } from '../audit.js';
import { generateClientSecret, hashClientSecret, MIN_SUPPLIED_SECRET_LENGTH } from '../auth/client-secrets.js';
import { isScopeToken } from '../auth/scopes.js';
import { deleteClient, findClientById, insertClient, listClients, updateClientSecretHash } from '../db/clients.js';
import { isUniqueViolation } from '../db/errors.js';
import { isValidClientId } from '../oauth/client-auth.js';
import type { ClientType, GrantType } from '../db/schema.js';
import { type Command, type CommandContext, CommandError, parse, positional, print, printTable, readSecretFromStdin, UsageError } from './command.js';

const GRANT_TYPES: readonly GrantType[] = ['password', 'refresh_token', 'client_credentials'];

function list_(values: readonly string[] | undefined): string[] {
  return [...new Set(values ?? [])];
}

/** A secret from stdin (migrating an existing client) must be as strong as a generated one. */
function suppliedSecret(ctx: CommandContext): string {
  const secret = readSecretFromStdin(ctx, '--secret-stdin');
  if (secret.length < MIN_SUPPLIED_SECRET_LENGTH) {
    throw new CommandError(`a client secret must have at least ${MIN_SUPPLIED_SECRET_LENGTH} characters`);
  }
  return secret;
}

const create: Command = async (args, ctx) => {
  const { values } = parse(args, {
    id: { type: 'string' },
    name: { type: 'string' },
    public: { type: 'boolean' },
    grant: { type: 'string', multiple: true },
    scope: { type: 'string', multiple: true },
    'default-scope': { type: 'string', multiple: true },
    audience: { type: 'string', multiple: true },
    'secret-stdin': { type: 'boolean' },
  });
  const id = values.id ?? randomBytes(12).toString('base64url');
  if (!isValidClientId(id)) throw new UsageError('--id has 1 to 64 letters, digits or . _ ~ - and is not shaped like a uuid');
  const type: ClientType = values.public ? 'public' : 'confidential';
  // DESIGN.md: the password grant is for confidential clients unless an operator says otherwise.
  if (type === 'public' && values.grant === undefined) {
    throw new UsageError('a public client needs its grants named explicitly (--grant password --grant refresh_token)');
  }
  const grantTypes = list_(values.grant ?? ['password', 'refresh_token']);
  const unknown = grantTypes.filter((grant) => !GRANT_TYPES.includes(grant as GrantType));
  if (unknown.length > 0) throw new UsageError(`unknown grant type: ${unknown.join(' ')} (known: ${GRANT_TYPES.join(', ')})`);
  if (type === 'public' && grantTypes.includes('client_credentials')) {
    throw new UsageError('a public client cannot use client_credentials: it has no secret');
  }
  const allowed = list_(values.scope);
  const defaults = list_(values['default-scope'] ?? allowed);
  const badScope = [...allowed, ...defaults].find((scope) => !isScopeToken(scope));
  if (badScope !== undefined) throw new UsageError(`not a valid scope: ${badScope}`);
  const outside = defaults.filter((scope) => !allowed.includes(scope));
  if (outside.length > 0) throw new UsageError(`default scopes must be allowed scopes too: ${outside.join(' ')}`);
  if (type === 'public' && values['secret-stdin']) throw new UsageError('a public client has no secret');

  const generated = type === 'confidential' && !values['secret-stdin'] ? generateClientSecret() : undefined;
  const secret = type === 'public' ? undefined : (generated ?? suppliedSecret(ctx));
  const now = new Date(ctx.clock.now());
  try {
    await insertClient(ctx.db, {
      id,
      name: values.name ?? id,
      type,
      secret_hash: secret === undefined ? null : hashClientSecret(secret),
      grant_types: grantTypes as GrantType[],
      allowed_scopes: allowed,
      default_scopes: defaults,
      audience: list_(values.audience),
      created_at: now,
      updated_at: now,
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new CommandError(`a client with id ${id} already exists`);
    throw error;
  }
  audit(ctx.log, 'client_created', { client_id: id, actor: 'cli', type, grant_types: grantTypes });
  print(ctx, values.json, { client_id: id, type, grant_types: grantTypes, scopes: allowed, ...(generated ? { client_secret: generated } : {}) });
};

const list: Command = async (args, ctx) => {
  const { values } = parse(args, {});
  const clients = await listClients(ctx.db);
  printTable(
    ctx,
    values.json,
    clients.map((client) => ({
      id: client.id,
      name: client.name,
      type: client.type,
      grant_types: client.grant_types,
      scopes: client.allowed_scopes,
      default_scopes: client.default_scopes,
      audience: client.audience,
    })),
  );
};

const remove: Command = async (args, ctx) => {
  const { values, positionals } = parse(args, {}, 1);
  const id = positional(positionals, 0, 'client_id');
  if (!(await deleteClient(ctx.db, id))) throw new CommandError(`no such client: ${id}`);
  audit(ctx.log, 'client_deleted', { client_id: id, actor: 'cli' });
  print(ctx, values.json, { client_id: id, deleted: true });
};

const rotateSecret: Command = async (args, ctx) => {
  const { values, positionals } = parse(args, { 'secret-stdin': { type: 'boolean' } }, 1);
  const id = positional(positionals, 0, 'client_id');
  const client = await findClientById(ctx.db, id);
  if (client === undefined) throw new CommandError(`no such client: ${id}`);
  if (client.type !== 'confidential') throw new CommandError(`client ${id} is public and has no secret`);
  const generated = values['secret-stdin'] ? undefined : generateClientSecret();
  const secret = generated ?? suppliedSecret(ctx);
  await updateClientSecretHash(ctx.db, id, hashClientSecret(secret), new Date(ctx.clock.now()));
  audit(ctx.log, 'client_secret_rotated', { client_id: id, actor: 'cli' });
  print(ctx, values.json, { client_id: id, ...(generated ? { client_secret: generated } : { rotated: true }) });
};

export const clientCommands: Record<string, Command> = { create, list, delete: remove, 'rotate-secret': rotateSecret };
