import { KeyLifecycleError, listKeyStatus, reencryptSigningKeys, rotateSigningKey } from '../keys/lifecycle.js';
import { cliAuditContext, cliChange, type Command, command, type CommandContext, CommandError, print, printTable } from './command.js';

/**
 * The CLI serves no JWKS: its own JWKS_MAX_AGE is not what verifiers hold. Its decisions and the
 * times it prints go by what the serving replicas announced (src/keys/lifecycle.ts).
 */
const decider = (ctx: CommandContext) => ({ config: ctx.config, serving: false });

const list = command({ summary: 'list signing keys, their states and next changes' }, async ({ options }, ctx) => {
  printTable(ctx, options.json, (await listKeyStatus(ctx.db, decider(ctx))).map((key) => ({ ...key })));
});

/** Adds a next key; it is published at once and signs at the time it prints, which every replica uses. */
const rotate = command(
  {
    summary: 'add a next signing key',
    details:
      'It is published in the JWKS at once and starts signing at the time it prints: decided now, on the database clock, from the settings the serving replicas announced; every replica uses it (see keys list).',
  },
  async ({ options }, ctx) => {
    try {
      const status = await rotateSigningKey({ ...decider(ctx), db: ctx.db, ring: ctx.keyRing, log: ctx.log, clock: ctx.clock }, 'cli', cliAuditContext());
      print(ctx, options.json, { kid: status.kid, state: status.state, activates_at: status.next_change_at?.toISOString() ?? '' });
    } catch (error) {
      if (error instanceof KeyLifecycleError) throw new CommandError(error.message);
      throw error;
    }
  },
);

/** After putting a new key first in KEY_ENCRYPTION_KEYS: seal every private key under it. */
const reencrypt = command(
  {
    summary: 'seal private keys under the first KEY_ENCRYPTION_KEYS',
    details: 'Run it after putting a new key first in KEY_ENCRYPTION_KEYS (new,old) and rolling the replicas; then remove the old key.',
  },
  async ({ options }, ctx) => {
    const count = await cliChange(
      ctx,
      (trx) => reencryptSigningKeys(trx, ctx.keyRing),
      (keys) => ({ event: 'keys_reencrypted', fields: { keys } }),
    );
    print(ctx, options.json, { keys_reencrypted: count });
  },
);

export const keyCommands: Record<string, Command> = { list, rotate, reencrypt };
