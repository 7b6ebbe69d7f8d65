import { parseArgs } from 'node:util';
import { checkScopeList } from '../auth/scopes.js';
import { UsageError } from './command.js';

/**
 * What a command takes, declared once in its entry of the command table: runCli checks a command
 * line against it before it reads the configuration or standard input, forwards anything or opens
 * a database; the command runs with what it parsed; and its `--help` is written from it.
 */
export interface Syntax {
  readonly arguments?: readonly Argument[];
  /** By name without the dashes: `scope` is `--scope`. */
  readonly options?: Readonly<Record<string, Option>>;
  /** Rules over the whole line that need no database (`--public` with `--secret-stdin`): what is wrong, or undefined. */
  readonly check?: (line: ParsedLine) => string | undefined;
}

export interface Argument<T = unknown> {
  /** `username` is `<username>` in the usage. */
  readonly name: string;
  /** One or more: `<scope>...`; only the last argument can be. */
  readonly variadic?: boolean;
  /** May be left out, as may every argument after it: `[<command> [<subcommand>]]`. */
  readonly optional?: boolean;
  /** Checks and converts the value; throws UsageError. */
  readonly parse?: (value: string) => T;
}

export interface Option<T = unknown> {
  readonly help: string;
  /** What its value is called in the usage (`S` in `--scope S`); an option without one is a flag. */
  readonly value?: string;
  readonly repeatable?: boolean;
  readonly required?: boolean;
  /** The option asks for a secret on standard input: stdin is read only when it is given. */
  readonly stdin?: boolean;
  /** Taken by every database command (`--json`): in the options list, not in each usage line. */
  readonly common?: boolean;
  /** Checks and converts each value; throws UsageError. */
  readonly parse?: (value: string) => T;
}

/** A command line read against its syntax: arguments and options by name (an option not given: undefined, or false for a flag). */
export interface ParsedLine {
  readonly args: Readonly<Record<string, unknown>>;
  readonly options: Readonly<Record<string, unknown>>;
}

type Converted<S, Otherwise> = S extends { parse: (value: string) => infer T } ? T : Otherwise;

/** The arguments a command's `run` receives, typed from its declaration. */
export type ArgumentValues<A extends readonly Argument[]> = {
  readonly [S in A[number] as S['name']]: S extends { variadic: true }
    ? Converted<S, string>[]
    : S extends { optional: true }
      ? Converted<S, string> | undefined
      : Converted<S, string>;
};

/** The options a command's `run` receives, typed from its declaration. */
export type OptionValues<O extends Readonly<Record<string, Option>>> = {
  readonly [K in keyof O]: O[K] extends { value: string }
    ? O[K] extends { repeatable: true }
      ? Converted<O[K], string>[] | undefined
      : O[K] extends { required: true }
        ? Converted<O[K], string>
        : Converted<O[K], string> | undefined
    : boolean;
};

/** A check that says what is wrong with a value (like checkScopeList), as a `parse` that refuses it. */
export function refusing(check: (value: string) => string | undefined): (value: string) => string {
  return (value) => {
    const problem = check(value);
    if (problem !== undefined) throw new UsageError(problem);
    return value;
  };
}

/** An argument or option value that must be a scope-token (RFC 6749 §3.3). */
export const scopeToken = refusing((value) => checkScopeList([value]));

/**
 * Strict: unknown options and extra arguments are usage errors, so that a password typed as an
 * argument (`set-password alice S3cret`) is refused instead of silently ignored. A message names
 * the option or argument at fault, never a value that may be a secret; only a `parse` that
 * refuses a value (a malformed scope) quotes it. Checked in order: the options, the number of
 * arguments, each value, then the line as a whole.
 */
export function parseArguments(syntax: Syntax, argv: readonly string[]): ParsedLine {
  const declared = Object.entries(syntax.options ?? {});
  const specs = syntax.arguments ?? [];
  let parsed: ReturnType<typeof parseArgs<{ options: Record<string, { type: 'string' | 'boolean'; multiple: boolean }>; allowPositionals: true }>>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries(declared.map(([name, option]) => [name, { type: option.value === undefined ? 'boolean' : 'string', multiple: option.repeatable ?? false }])),
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    const option = /'(-{1,2}[\w-]+)/.exec((error as Error).message)?.[1];
    throw new UsageError(option ? `unknown or malformed option ${option}` : 'malformed options');
  }

  const words = parsed.positionals;
  if (specs.at(-1)?.variadic !== true && words.length > specs.length) {
    // Whoever typed a secret here learns where it goes; serve and migrate, which take nothing, need no reminder.
    throw new UsageError(declared.length + specs.length > 0 ? 'too many arguments (passwords and secrets are read from standard input, never from arguments)' : 'too many arguments');
  }
  specs.forEach((spec, i) => {
    // An empty argument ('') names nothing: as good as a missing one.
    const missing = spec.variadic ? words.length <= i : (words[i] ?? '') === '';
    if (missing && !spec.optional) throw new UsageError(spec.variadic ? `name at least one ${spec.name}` : `missing <${spec.name}>`);
  });
  for (const [name, option] of declared) {
    if (option.required && parsed.values[name] === undefined) throw new UsageError(`missing ${flag(name, option)}`);
  }

  const convert = (parse: ((value: string) => unknown) | undefined, value: string) => (parse ? parse(value) : value);
  const args: Record<string, unknown> = {};
  specs.forEach((spec, i) => {
    if (spec.variadic) args[spec.name] = words.slice(i).map((word) => convert(spec.parse, word));
    else if ((words[i] ?? '') !== '') args[spec.name] = convert(spec.parse, words[i]!);
  });
  const options: Record<string, unknown> = {};
  for (const [name, option] of declared) {
    const value = parsed.values[name];
    if (option.value === undefined) options[name] = value === true;
    else if (Array.isArray(value)) options[name] = value.map((each) => convert(option.parse, each as string));
    else if (value !== undefined) options[name] = convert(option.parse, value as string);
  }
  const problem = syntax.check?.({ args, options });
  if (problem !== undefined) throw new UsageError(problem);
  return { args, options };
}

/** Whether the command line asks for a secret on standard input (`--password-stdin`, `--secret-stdin`). */
export function readsStdin(syntax: Syntax, line: ParsedLine): boolean {
  return Object.entries(syntax.options ?? {}).some(([name, option]) => option.stdin === true && line.options[name] === true);
}

/** The words after `tessera <command>` in its usage: `<username> [--password-stdin] [--scope S]...`. */
export function formatUsageLine(syntax: Syntax): string {
  const specs = syntax.arguments ?? [];
  const required = specs.filter((spec) => !spec.optional).map((spec) => `<${spec.name}>${spec.variadic ? '...' : ''}`);
  const optional = specs.filter((spec) => spec.optional).reduceRight((inner, spec) => `[<${spec.name}>${inner === '' ? '' : ` ${inner}`}]`, '');
  const options = Object.entries(syntax.options ?? {})
    .filter(([, option]) => !option.common)
    .map(([name, option]) => (option.required ? flag(name, option) : `[${flag(name, option)}]${option.repeatable ? '...' : ''}`));
  return [...required, optional, ...options].filter((word) => word !== '').join(' ');
}

/** Each option as the usage writes it (`--scope S`) and what it does. */
export function formatOptionList(syntax: Syntax): [string, string][] {
  return Object.entries(syntax.options ?? {}).map(([name, option]) => [flag(name, option), option.help]);
}

const flag = (name: string, option: Option) => (option.value === undefined ? `--${name}` : `--${name} ${option.value}`);
