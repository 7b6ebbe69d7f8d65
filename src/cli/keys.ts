import { audit } from '../audit.js';
import { KeyLifecycleError, listKeyStatus, reencryptSigningKeys, rotateSigningKey } from '../keys/lifecycle.js';
import { type Command, CommandError, parse, print, printTable } from './command.js';

const list: Command = async (args, ctx) => {
  const { values } = parse(args, {});
  printTable(ctx, values.json, (await listKeyStatus(ctx.db, ctx.config)).map((key) => ({ ...key })));
};

/** Adds a next key; it is published at once and signs after the promotion delay (see `keys list`). */
const rotate: Command = async (args, ctx) => {
  const { values } = parse(args, {});
  try {
    const kid = await rotateSigningKey(ctx.db, ctx.keyRing, ctx.clock, ctx.log, 'cli');
    const status = (await listKeyStatus(ctx.db, ctx.config)).find((key) => key.kid === kid);
    print(ctx, values.json, { kid, state: 'next', activates_at: status?.next_change_at?.toISOString() ?? '' });
  } catch (error) {
    if (error instanceof KeyLifecycleError) throw new CommandError(error.message);
    throw error;
  }
};

/** After putting a new key first in KEY_ENCRYPTION_KEYS: seal every private key under it. */
const reencrypt: Command = async (args, ctx) => {
  const { values } = parse(args, {});
  const count = await reencryptSigningKeys(ctx.db, ctx.keyRing);
  audit(ctx.log, 'keys_reencrypted', { actor: 'cli', keys: count });
  print(ctx, values.json, { keys_reencrypted: count });
};

export const keyCommands: Record<string, Command> = { list, rotate, reencrypt };
