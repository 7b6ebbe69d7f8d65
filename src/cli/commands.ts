import { AccountError } from '../auth/accounts.js';
import { ClientError } from '../auth/client-registry.js';
import { RoleError } from '../auth/roles.js';
import { isForeignKeyViolation } from '../db/errors.js';
import { clientCommands } from './clients.js';
import { keyCommands } from './keys.js';
import { purgeRefreshFamilies } from '../refresh/housekeeping.js';
import { type Command, type CommandContext, CommandError, EXIT, parse, print, UsageError } from './command.js';
import { roleCommands } from './roles.js';
import { userCommands } from './users.js';

/** The command groups that work on the database, runnable in the CLI or in a server over its control socket. */
const groups: Record<string, Record<string, Command>> = {
  users: userCommands,
  roles: roleCommands,
  clients: clientCommands,
  keys: keyCommands,
};

/** `tessera purge`: delete expired refresh families now (the server also does it periodically). */
const purge: Command = async (args, ctx) => {
  const { values } = parse(args, {});
  print(ctx, values.json, { families_deleted: await purgeRefreshFamilies(ctx) });
};
const topLevel: Record<string, Command> = { purge };

function findCommand(argv: readonly string[]): { command: Command | undefined; args: readonly string[] } {
  const [group = '', name = '', ...rest] = argv;
  if (topLevel[group] !== undefined) return { command: topLevel[group], args: argv.slice(1) };
  return { command: groups[group]?.[name], args: rest };
}

export const USAGE = `Usage: tessera <command> [options]

  serve                                   run the HTTP service (applies pending migrations first)
  migrate                                 apply pending database migrations
  purge                                   delete expired refresh-token families now

  users create <username> [--password-stdin] [--scope S]... [--role R]...
  users list [--limit N] [--after USERNAME]
  users disable|enable|delete <username>
  users set-password <username> [--password-stdin]   (ends the user's sessions)
  users logout <username>                 end every refresh-token family (session) of the user
  users grant|revoke <username> <scope>...

  roles create <role> [--scope S]... [--description TEXT]
  roles list | roles delete <role>
  roles grant|revoke <role> <username>
  roles add-scope|remove-scope <role> <scope>...

  clients create [--id ID] [--name NAME] [--public] [--grant TYPE]... [--scope S]...
                 [--default-scope S]... [--audience AUD]... [--secret-stdin]
  clients list | clients delete <client_id>
  clients rotate-secret <client_id> [--secret-stdin]

  keys list                               signing keys: state, dates, when each next changes
  keys rotate                             add a next key (signs once every verifier can know it)
  keys reencrypt                          seal every private key under the first KEY_ENCRYPTION_KEYS entry

Every command takes --json for machine-readable output. Passwords and secrets are read from
standard input (--password-stdin, --secret-stdin) or generated and printed once; never from
arguments. Exit codes: 0 done, 1 failed (no such user, conflict, policy), 2 usage, 78 configuration.
`;

const USAGE_ERROR_CODES = new Set<string>(['invalid_scope', 'invalid_role', 'invalid_client_metadata']);

export function isDatabaseCommand(argv: readonly string[]): boolean {
  return findCommand(argv).command !== undefined;
}

/** Runs `users ...`, `roles ...` or `clients ...`; returns the exit code. */
export async function runCommand(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { command, args } = findCommand(argv);
  if (command === undefined) {
    ctx.err(`error: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${USAGE}`);
    return EXIT.usage;
  }
  try {
    await command(args, ctx);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof UsageError) {
      ctx.err(`error: ${error.message}\n(see tessera --help)\n`);
      return EXIT.usage;
    }
    if (error instanceof AccountError || error instanceof RoleError || error instanceof ClientError) {
      // Malformed input is a usage error, like a wrong option; a rule the input broke is a failure.
      const usage = USAGE_ERROR_CODES.has(error.code);
      ctx.err(`error: ${error.message}\n${usage ? '(see tessera --help)\n' : ''}`);
      return usage ? EXIT.usage : EXIT.failed;
    }
    if (error instanceof CommandError) {
      ctx.err(`error: ${error.message}\n`);
      return EXIT.failed;
    }
    if (isForeignKeyViolation(error)) {
      ctx.err('error: a role named there does not exist\n');
      return EXIT.failed;
    }
    throw error;
  }
}
