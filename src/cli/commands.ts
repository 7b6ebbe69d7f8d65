import { AccountError } from '../auth/accounts.js';
import { ClientError } from '../auth/client-registry.js';
import { RoleError } from '../auth/roles.js';
import { isForeignKeyViolation } from '../db/errors.js';
import { auditCommands } from './audit.js';
import { clientCommands } from './clients.js';
import { keyCommands } from './keys.js';
import { migrateStatus } from './migrations.js';
import { purgeAuditEvents, purgePasswordResetTokens, purgeRefreshFamilies } from '../refresh/housekeeping.js';
import { type Command, type CommandContext, command, CommandError, type Entry, EXIT, formatUsageError, print, UsageError } from './command.js';
import { roleCommands } from './roles.js';
import { parseArguments } from './syntax.js';
import { userCommands } from './users.js';

/** `tessera purge`: delete expired refresh families and old audit events now (the server also does it periodically). */
const purge = command(
  {
    summary: 'delete expired refresh-token families and audit events',
    details: 'Audit events older than AUDIT_RETENTION (default 90d) go too. The server also does it periodically, with spent password-reset tokens.',
  },
  async ({ options }, ctx) => {
    print(ctx, options.json, {
      families_deleted: await purgeRefreshFamilies(ctx),
      reset_tokens_deleted: await purgePasswordResetTokens(ctx),
      audit_events_deleted: await purgeAuditEvents(ctx),
    });
  },
);

function inGroup(group: string, commands: Record<string, Command>): [string, Command][] {
  return Object.entries(commands).map(([name, entry]) => [`${group} ${name}`, entry]);
}

/**
 * The commands that work on the database, by their words (`purge`, `users create`): runnable in the
 * CLI or inside a running embedded server over its control socket.
 */
const databaseCommands: ReadonlyMap<string, Command> = new Map([
  ['migrate status', migrateStatus],
  ['purge', purge],
  ...inGroup('users', userCommands),
  ...inGroup('roles', roleCommands),
  ...inGroup('clients', clientCommands),
  ...inGroup('keys', keyCommands),
  ...inGroup('audit', auditCommands),
]);

/**
 * Every command, in the order the usage lists them: the database commands, and those that runCli
 * (src/cli/run.ts) runs itself.
 */
export const COMMANDS: ReadonlyMap<string, Entry> = new Map<string, Entry>([
  [
    'serve',
    {
      summary: 'run the HTTP service (migrating the database first)',
      details: 'It is configured by environment variables (see README.md) and runs until SIGTERM or SIGINT.',
    },
  ],
  [
    'migrate',
    {
      summary: 'apply pending database migrations',
      details: 'PostgreSQL is migrated only by this command or by serve; the embedded database on first use.',
    },
  ],
  ...databaseCommands,
  [
    'help',
    {
      summary: 'print the usage of tessera or of one command',
      // Answered by readCommandLine (src/cli/help.ts), which reads these words as command names.
      arguments: [
        { name: 'command', optional: true },
        { name: 'subcommand', optional: true },
      ],
    },
  ],
]);

/**
 * The command `argv` starts with, two words before one (`users create`, then `purge`), and the
 * arguments after it. A word is compared whole: `"users create"` as one argument names nothing.
 */
export function findCommand<T>(commands: ReadonlyMap<string, T>, argv: readonly string[]): { name: string; command: T; args: readonly string[] } | undefined {
  for (const count of [2, 1]) {
    const words = argv.slice(0, count);
    if (words.length < count || words.some((word) => word.includes(' '))) continue;
    const found = commands.get(words.join(' '));
    if (found !== undefined) return { name: words.join(' '), command: found, args: argv.slice(count) };
  }
  return undefined;
}

const USAGE_ERROR_CODES = new Set<string>(['invalid_scope', 'invalid_role', 'invalid_client_metadata']);

/** Runs `migrate status`, `purge`, `users ...`, `roles ...`, `clients ...`, `keys ...` or `audit ...`; returns the exit code. */
export async function runCommand(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const found = findCommand(databaseCommands, argv);
  if (found === undefined) {
    // Only a request over the control socket gets here: runCli answers unknown words itself.
    ctx.err(formatUsageError(`unknown command "${argv.slice(0, 2).join(' ')}"`));
    return EXIT.usage;
  }
  try {
    // The same parse runCli made before it forwarded or opened anything: here it gives run its values.
    await found.command.run(parseArguments(found.command, found.args), ctx);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof UsageError) {
      ctx.err(formatUsageError(error.message, found.name));
      return EXIT.usage;
    }
    if (error instanceof AccountError || error instanceof RoleError || error instanceof ClientError) {
      // Malformed input is a usage error, like a wrong option; a rule the input broke is a failure.
      const usage = USAGE_ERROR_CODES.has(error.code);
      ctx.err(usage ? formatUsageError(error.message, found.name) : `error: ${error.message}\n`);
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
