import { AccountError } from '../auth/accounts.js';
import { isForeignKeyViolation } from '../db/errors.js';
import { clientCommands } from './clients.js';
import { type Command, type CommandContext, CommandError, EXIT, UsageError } from './command.js';
import { roleCommands } from './roles.js';
import { userCommands } from './users.js';

/** The command groups that work on the database, runnable in the CLI or in a server over its control socket. */
const groups: Record<string, Record<string, Command>> = {
  users: userCommands,
  roles: roleCommands,
  clients: clientCommands,
};

export const USAGE = `Usage: tessera <command> [options]

  serve                                   run the HTTP service (applies pending migrations first)
  migrate                                 apply pending database migrations

  users create <username> [--password-stdin] [--scope S]... [--role R]...
  users list [--limit N] [--after USERNAME]
  users disable|enable|delete <username>
  users set-password <username> [--password-stdin]
  users grant|revoke <username> <scope>...

  roles create <role> [--scope S]... [--description TEXT]
  roles list | roles delete <role>
  roles grant|revoke <role> <username>
  roles add-scope|remove-scope <role> <scope>...

  clients create [--id ID] [--name NAME] [--public] [--grant TYPE]... [--scope S]...
                 [--default-scope S]... [--audience AUD]... [--secret-stdin]
  clients list | clients delete <client_id>
  clients rotate-secret <client_id> [--secret-stdin]

Every command takes --json for machine-readable output. Passwords and secrets are read from
standard input (--password-stdin, --secret-stdin) or generated and printed once; never from
arguments. Exit codes: 0 done, 1 failed (no such user, conflict, policy), 2 usage, 78 configuration.
`;

export function isDatabaseCommand(argv: readonly string[]): boolean {
  const [group, name] = argv;
  return group !== undefined && name !== undefined && groups[group]?.[name] !== undefined;
}

/** Runs `users ...`, `roles ...` or `clients ...`; returns the exit code. */
export async function runCommand(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const [group = '', name = '', ...args] = argv;
  const command = groups[group]?.[name];
  if (command === undefined) {
    ctx.err(`error: unknown command "${[group, name].join(' ').trim()}"\n\n${USAGE}`);
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
    if (error instanceof CommandError || error instanceof AccountError) {
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
