import { audit } from '../audit.js';
import { KeyLifecycleError, listKeyStatus, reencryptSigningKeys, rotateSigningKey } from '../keys/lifecycle.js';
import { type Command, command, CommandError, parse, print, printTable } from './command.js';

const list = command({ usage: '', summary: 'list signing keys, their states and next changes' }, async (args, ctx) => {
  const { values } = parse(args, {});
  printTable(ctx, values.json, (await listKeyStatus(ctx.db, ctx.config)).map((key) => ({ ...key })));
});

/** Adds a next key; it is published at once and signs after the promotion delay (see `keys list`). */
const rotate = command(
  {
    usage: '',
    summary: 'add a next signing key',
    details: 'It is published in the JWKS at once and starts signing after the promotion delay, once every verifier can know it (see keys list).',
  },
  async (args, ctx) => {
    const { values } = parse(args, {});
    try {
      const kid = await rotateSigningKey(ctx.db, ctx.keyRing, ctx.clock, ctx.log, 'cli');
      const status = (await listKeyStatus(ctx.db, ctx.config)).find((key) => key.kid === kid);
      print(ctx, values.json, { kid, state: 'next', activates_at: status?.next_change_at?.toISOString() ?? '' });
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
