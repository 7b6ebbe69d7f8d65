import { audit } from '../audit.js';
import { KeyLifecycleError, listKeyStatus, reencryptSigningKeys, rotateSigningKey } from '../keys/lifecycle.js';
import { type Command, command, type CommandContext, CommandError, parse, print, printTable } from './command.js';

/**
 * The CLI serves no JWKS: its own JWKS_MAX_AGE is not what verifiers hold. Its decisions and the
 * times it prints go by what the serving replicas announced (src/keys/lifecycle.ts).
 */
const decider = (ctx: CommandContext) => ({ config: ctx.config, serving: false });

const list = command({ usage: '', summary: 'list signing keys, their states and next changes' }, async (args, ctx) => {
  const { values } = parse(args, {});
  printTable(ctx, values.json, (await listKeyStatus(ctx.db, decider(ctx))).map((key) => ({ ...key })));
});

/** Adds a next key; it is published at once and signs at the time it prints, which every replica uses. */
const rotate = command(
  {
    usage: '',
    summary: 'add a next signing key',
    details:
      'It is published in the JWKS at once and starts signing at the time it prints: decided now, on the database clock, from the settings the serving replicas announced; every replica uses it (see keys list).',
  },
  async (args, ctx) => {
    const { values } = parse(args, {});
    try {
      const status = await rotateSigningKey({ ...decider(ctx), db: ctx.db, ring: ctx.keyRing, log: ctx.log }, 'cli');
      print(ctx, values.json, { kid: status.kid, state: status.state, activates_at: status.next_change_at?.toISOString() ?? '' });
    } catch (error) {
      if (error instanceof KeyLifecycleError) throw new CommandError(error.message);
      throw error;
    }
  },
);

/** After putting a new key first in KEY_ENCRYPTION_KEYS: seal every private key under it. */
const reencrypt = command(
  {
    usage: '',
    summary: 'seal private keys under the first KEY_ENCRYPTION_KEYS',
    details: 'Run it after putting a new key first in KEY_ENCRYPTION_KEYS (new,old) and rolling the replicas; then remove the old key.',
  },
  async (args, ctx) => {
    const { values } = parse(args, {});
    const count = await reencryptSigningKeys(ctx.db, ctx.keyRing);
    audit(ctx.log, 'keys_reencrypted', { actor: 'cli', keys: count });
    print(ctx, values.json, { keys_reencrypted: count });
  },
);

export const keyCommands: Record<string, Command> = { list, rotate, reencrypt };
