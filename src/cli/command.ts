import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { PasswordHasher } from '../auth/passwords.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database } from '../db/schema.js';
import type { KeyRing } from '../keys/key-encryption.js';

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

/** What `--help` prints for a command: part of the command's entry, so help and dispatch read one table. */
export interface Help {
  /** The words after `tessera <command>` in its usage line: `<username> [--password-stdin]`. */
  readonly usage: string;
  /** One line: what the command does, as the command list shows it. */
  readonly summary: string;
  /** Each option as the usage writes it (`--scope S`) and what it does. */
  readonly options?: Readonly<Record<string, string>>;
  /** More to say, printed after the summary. */
  readonly details?: string;
}

/** A command on the database, runnable in the CLI or in a server over its control socket. */
export interface Command extends Help {
  run(args: readonly string[], ctx: CommandContext): Promise<void>;
}

/** A command with its help; every one parses with `parse`, so every one takes --json too. */
export function command(help: Help, run: Command['run']): Command {
  return { ...help, options: { ...help.options, '--json': 'print the result as JSON' }, run };
}

type Options = NonNullable<ParseArgsConfig['options']>;
type ParsedWith<T extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>>;

/**
 * Strict parsing: unknown options and extra arguments are usage errors, so that a password typed
 * as an argument (`set-password alice S3cret`) is refused instead of silently ignored. The
 * offending value is never repeated back.
 */
export function parseStrictly<T extends Options>(args: readonly string[], options: T, maxPositionals = 0, tooMany = 'too many arguments'): ParsedWith<T> {
  let parsed: ParsedWith<T>;
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (error) {
    const option = /'(-{1,2}[\w-]+)/.exec((error as Error).message)?.[1];
    throw new UsageError(option ? `unknown or malformed option ${option}` : 'malformed options');
  }
  if (parsed.positionals.length > maxPositionals) throw new UsageError(tooMany);
  return parsed;
}

/** `parseStrictly` with the --json every database command takes, and a reminder for whoever typed a secret. */
export function parse<T extends Options>(args: readonly string[], options: T, maxPositionals = 0): ParsedWith<T & { json: { type: 'boolean' } }> {
  const tooMany = 'too many arguments (passwords and secrets are read from standard input, never from arguments)';
  return parseStrictly(args, { ...options, json: { type: 'boolean' } }, maxPositionals, tooMany);
}

export function positional(positionals: readonly string[], index: number, name: string): string {
  const value = positionals[index];
  if (value === undefined || value === '') throw new UsageError(`missing <${name}>`);
  return value;
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
