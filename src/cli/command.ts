import { userInfo } from 'node:os';
import type { Kysely } from 'kysely';
import type { AuditContext } from '../audit/entry.js';
import type { AuditEvent } from '../audit/events.js';
import { auditedChange } from '../audit/writer.js';
import type { Logger } from 'pino';
import type { PasswordHasher } from '../auth/passwords.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database } from '../db/schema.js';
import type { KeyRing } from '../keys/key-encryption.js';
import type { Argument, ArgumentValues, Option, OptionValues, ParsedLine, Syntax } from './syntax.js';

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failed: 1, usage: 2, config: 78 } as const;

/** What a CLI command runs with, in the CLI process or inside a running embedded server. */
export interface CommandContext {
  readonly db: Kysely<Database>;
  readonly config: Config;
  readonly clock: Clock;
  readonly log: Logger;
  readonly passwords: PasswordHasher;
  readonly keyRing: KeyRing;
  /** Standard input, read in full when the command asked for it (--password-stdin, --secret-stdin). */
  readonly stdin: string | undefined;
  out(text: string): void;
  err(text: string): void;
}

/** Wrong words on the command line: exit 2. */
export class UsageError extends Error {}
/** The command could not do what was asked (no such user, a conflict, a policy): exit 1. */
export class CommandError extends Error {}

/** How a usage error ends: what is wrong, and the help that shows what is right (`tessera users create --help`). */
export function formatUsageError(message: string, command = ''): string {
  return `error: ${message}\n(see tessera ${command === '' ? '' : `${command} `}--help)\n`;
}

/**
 * A command in the table (src/cli/commands.ts): what `--help` prints, and what its command line
 * may hold, which is also what the help's usage line and option list are written from.
 */
export interface Entry extends Syntax {
  /** One line: what the command does, as the command list shows it. */
  readonly summary: string;
  /** More to say, printed after the summary. */
  readonly details?: string;
}

/** A command on the database, runnable in the CLI or in a server over its control socket. */
export interface Command extends Entry {
  /** Runs with the command line as parseArguments read it against this very entry. */
  run(line: ParsedLine, ctx: CommandContext): Promise<void>;
}

const JSON_OPTION = { json: { help: 'print the result as JSON', common: true } } as const;

/** A command line as a command declared it, typed: what its `check` and `run` get. */
interface Line<A extends readonly Argument[], O extends Readonly<Record<string, Option>>> {
  readonly args: ArgumentValues<A>;
  readonly options: OptionValues<O & typeof JSON_OPTION>;
}

/** A command on the database; every one takes --json too. `check` and `run` get the values its declaration types. */
export function command<const A extends readonly Argument[] = [], const O extends Readonly<Record<string, Option>> = {}>(
  entry: Omit<Entry, 'arguments' | 'options' | 'check'> & {
    readonly arguments?: A;
    readonly options?: O;
    readonly check?: (line: Line<A, O>) => string | undefined;
  },
  run: (line: Line<A, O>, ctx: CommandContext) => Promise<void>,
): Command {
  // parseArguments makes the line from this very entry, so it has the shape the declaration says.
  const typed = (line: ParsedLine) => line as Line<A, O>;
  const { check } = entry;
  return {
    ...entry,
    options: { ...entry.options, ...JSON_OPTION },
    check: check && ((line) => check(typed(line))),
    run: (line, ctx) => run(typed(line), ctx),
  };
}

/** Prints a record as `key: value` lines, or as one JSON document with --json. */
export function print(ctx: CommandContext, json: boolean | undefined, data: Record<string, unknown>): void {
  if (json) return ctx.out(`${JSON.stringify(data)}\n`);
  for (const [key, value] of Object.entries(data)) {
    ctx.out(`${key}: ${Array.isArray(value) ? value.join(' ') : String(value)}\n`);
  }
}

/** Prints rows as an aligned table, or as a JSON array with --json. */
export function printTable(ctx: CommandContext, json: boolean | undefined, rows: readonly Record<string, unknown>[]): void {
  if (json) return ctx.out(`${JSON.stringify(rows)}\n`);
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]!);
  const cells = rows.map((row) => columns.map((column) => cell(row[column])));
  const widths = columns.map((column, i) => Math.max(column.length, ...cells.map((line) => line[i]!.length)));
  const line = (values: readonly string[]) => values.map((value, i) => value.padEnd(widths[i]!)).join('  ').trimEnd();
  ctx.out(`${line(columns.map((c) => c.toUpperCase()))}\n${cells.map(line).join('\n')}\n`);
}

function cell(value: unknown): string {
  if (Array.isArray(value)) return value.join(',') || '-';
  if (value instanceof Date) return value.toISOString();
  return value === null || value === undefined || value === '' ? '-' : String(value);
}

/** A secret from stdin: the one trailing newline that `echo` or a terminal adds is not part of it. */
export function readSecretFromStdin(ctx: CommandContext, flag: string): string {
  if (ctx.stdin === undefined) throw new UsageError(`${flag} needs the secret on standard input`);
  const secret = ctx.stdin.replace(/\r?\n$/, '');
  if (secret === '') throw new UsageError(`${flag}: standard input was empty`);
  return secret;
}

/**
 * Who runs the CLI: the OS user. A command forwarded to a running embedded server over its control
 * socket runs there, but that socket is the same OS user's alone (mode 0600), so it names the same.
 */
export function cliAuditContext(): AuditContext {
  let id: string;
  try {
    id = userInfo().username;
  } catch {
    id = `uid:${process.getuid?.() ?? 'unknown'}`; // a uid with no passwd entry (some containers)
  }
  return { actor: { type: 'cli', id } };
}

/** A CLI change and its audit event (actor `cli` with the OS user) in one transaction. */
export function cliChange<T>(
  ctx: CommandContext,
  change: (trx: Kysely<Database>) => Promise<T>,
  note: (result: T) => { readonly event: AuditEvent; readonly fields: Readonly<Record<string, unknown>> } | undefined,
): Promise<T> {
  return auditedChange(ctx, cliAuditContext(), change, (result) => {
    const described = note(result);
    return described && { event: described.event, fields: { ...described.fields, actor: 'cli' } };
  });
}
