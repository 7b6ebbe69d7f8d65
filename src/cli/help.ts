import { readPackageVersion } from '../package-root.js';
import { type Entry, EXIT, formatUsageError, UsageError } from './command.js';
import { COMMANDS, findCommand } from './commands.js';
import { formatOptionList, formatUsageLine, type ParsedLine, parseArguments } from './syntax.js';

/** What the command line gets instead of running a command. */
export interface Answer {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The command to run, and what its arguments and options were parsed into. */
export interface CommandLine {
  readonly name: string;
  readonly entry: Entry;
  readonly parsed: ParsedLine;
}

/** Columns: what a terminal shows without wrapping lines itself. */
const WIDTH = 80;
const HELP_FLAGS: ReadonlySet<string> = new Set(['--help', '-h']);
const VERSION_FLAGS: ReadonlySet<string> = new Set(['--version', '-V']);

/**
 * Help, the version, words that name no command and a command line its command does not take are
 * answered from argv alone, before any configuration is read: `--help` or a typo must never start
 * a server, migrate, create a file, read standard input or reach a running server. A --help or -h
 * anywhere before a `--` asks for the usage of the command it follows.
 */
export function readCommandLine(argv: readonly string[]): Answer | CommandLine {
  const end = argv.indexOf('--');
  const options = end === -1 ? argv : argv.slice(0, end);
  if (options.some((arg) => HELP_FLAGS.has(arg))) return answerHelp(takeLeadingWords(argv.filter((arg) => !HELP_FLAGS.has(arg))));
  const [first] = argv;
  if (first === undefined) return { exitCode: EXIT.usage, stdout: '', stderr: formatUsage() };
  if (VERSION_FLAGS.has(first)) return answerWith(`${readPackageVersion()}\n`);
  if (first === 'help') return answerHelp(argv.slice(1), true);
  const found = findCommand(COMMANDS, argv);
  if (found !== undefined) {
    try {
      return { name: found.name, entry: found.command, parsed: parseArguments(found.command, found.args) };
    } catch (error) {
      if (error instanceof UsageError) return refuse(error.message, found.name);
      throw error;
    }
  }
  // `tessera users` alone is to a group what `tessera` alone is to the tool.
  const [, second] = argv;
  if (isGroup(first) && (second === undefined || second.startsWith('-'))) return { exitCode: EXIT.usage, stdout: '', stderr: formatGroupUsage(first) };
  return refuseUnknown(argv);
}

/** The usage of what `words` name: the tool, a group or a command. `exact`: nothing may follow them. */
function answerHelp(words: readonly string[], exact = false): Answer {
  const found = findCommand(COMMANDS, words);
  if (found !== undefined && exact && found.args.length > 0) return refuse('help takes a command and at most one subcommand', 'help');
  if (found !== undefined) return answerWith(formatCommandUsage(found.name, found.command));
  if (words.length === 0) return answerWith(formatUsage());
  if (words.length === 1 && isGroup(words[0]!)) return answerWith(formatGroupUsage(words[0]!));
  return refuseUnknown(words);
}

/** The words before the first option, at most two (`users create` in `users create alice --scope x`). */
function takeLeadingWords(argv: readonly string[]): readonly string[] {
  const firstOption = argv.findIndex((arg) => arg.startsWith('-'));
  return argv.slice(0, firstOption === -1 ? 2 : Math.min(firstOption, 2));
}

/** Names the word that is wrong, never what follows it (it may be a secret typed in the wrong place). */
function refuseUnknown([first = '', second]: readonly string[]): Answer {
  if (first.startsWith('-')) return refuse(`unknown option ${first.split('=')[0]}`);
  if (isGroup(first) && second !== undefined) return refuse(`unknown command "${first} ${second}"`, first);
  return refuse(`unknown command "${first}"`);
}

function isGroup(word: string): boolean {
  return [...COMMANDS.keys()].some((name) => name.startsWith(`${word} `));
}

const answerWith = (text: string): Answer => ({ exitCode: EXIT.ok, stdout: text, stderr: '' });
/** A usage error, pointing to the help of `command` (of tessera itself by default). */
const refuse = (message: string, command = ''): Answer => ({ exitCode: EXIT.usage, stdout: '', stderr: formatUsageError(message, command) });

const FOOTER = [
  '`tessera help <command>` or `tessera <command> --help` shows one command.',
  'Passwords and secrets are read from standard input (--password-stdin, --secret-stdin) or generated and printed once; never from arguments.',
  'The configuration comes from environment variables (see README.md).',
  'Exit codes: 0 done, 1 failed (no such user, conflict, policy), 2 usage error, 78 bad configuration.',
];

/** The top-level usage, of `commands` (a parameter for src/cli/help.test.ts). */
export function formatUsage(commands: ReadonlyMap<string, Pick<Entry, 'summary'>> = COMMANDS): string {
  const names = [...commands.keys()];
  // A blank line where a group of subcommands starts or ends (`migrate` leads its own group).
  const groupOf = (name: string) => (isGroup(name.split(' ')[0]!) ? name.split(' ')[0] : '');
  // One entry per command, however many lines a long summary wraps to.
  const rows = formatTableRows([...commands].map(([name, help]) => [name, help.summary]));
  const spaced = rows.flatMap((row, i) => (i > 0 && groupOf(names[i]!) !== groupOf(names[i - 1]!) ? ['', row] : [row]));
  return `Usage: tessera <command> [options]

Commands:
${spaced.join('\n')}

Options:
${formatTable([
  ['-h, --help', 'print the usage of tessera or of the command before it'],
  ['-V, --version', 'print the version of tessera'],
])}

${FOOTER.map((paragraph) => wrapHanging('', paragraph)).join('\n')}
`;
}

function formatGroupUsage(group: string): string {
  const entries = [...COMMANDS].filter(([name]) => name.startsWith(`${group} `));
  return `Usage: tessera ${group} <subcommand> [options]

Subcommands:
${formatTable(entries.map(([name, help]) => [name.slice(group.length + 1), help.summary]))}

\`tessera ${group} <subcommand> --help\` shows one subcommand.
`;
}

/** A command's usage, written from its entry: the words and options its command line is parsed against. */
function formatCommandUsage(name: string, entry: Entry): string {
  const subcommands = [...COMMANDS].filter(([other]) => other.startsWith(`${name} `));
  const options: [string, string][] = [...formatOptionList(entry), ['-h, --help', 'print this usage and do nothing else']];
  return [
    `${wrapHanging(`Usage: tessera ${name} `, formatUsageLine(entry)).trimEnd()}\n`,
    `${wrapHanging('', `${entry.summary[0]!.toUpperCase()}${entry.summary.slice(1)}.${entry.details ? ` ${entry.details}` : ''}`)}\n`,
    `Options:\n${formatTable(options)}\n`,
    ...(subcommands.length > 0 ? [`Subcommands:\n${formatTable(subcommands.map(([other, { summary }]) => [other, summary]))}\n`] : []),
  ].join('\n');
}

/** Two aligned columns, indented. */
function formatTable(rows: readonly (readonly [string, string])[]): string {
  return formatTableRows(rows).join('\n');
}

/** Each row of a two-column table, wrapped (so possibly several lines) under one column width. */
function formatTableRows(rows: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return rows.map(([left, right]) => wrapHanging(`  ${left.padEnd(width)}`, right));
}

/**
 * `prefix` and `text`, wrapped to WIDTH with the later lines indented as far as `prefix` goes.
 * Lines break at spaces outside brackets, so `[--scope S]...` stays on one line.
 */
function wrapHanging(prefix: string, text: string): string {
  const words: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    if (text[i] === '[') depth++;
    else if (text[i] === ']') depth--;
    else if (i === text.length || (text[i] === ' ' && depth === 0)) {
      words.push(text.slice(start, i));
      start = i + 1;
    }
  }
  const lines = [prefix];
  for (const word of words) {
    const last = lines.length - 1;
    const line = lines[last]!;
    if (line.trim() !== '' && line.length + 1 + word.length > WIDTH) lines.push(' '.repeat(prefix.length) + word);
    else lines[last] = line.length === prefix.length ? line + word : `${line} ${word}`;
  }
  return lines.join('\n');
}
