import type { DestinationStream } from 'pino';
import { collectSigningKeys, knownSecrets, MIN_SECRET_LENGTH } from './secrets.js';

/** Collects every JSON log line, so tests can assert audit events and that nothing secret was logged. */
export interface CapturedLogs extends DestinationStream {
  readonly lines: string[];
  /** Parsed entries, optionally only those with this `event`. */
  entries(event?: string): Record<string, unknown>[];
}

/** Every log this test file produced: captured loggers and the output of processes it ran. */
const sources: { readonly name: string; lines(): readonly string[] }[] = [];

export function captureLogs(): CapturedLogs {
  const lines: string[] = [];
  sources.push({ name: `captured log ${sources.length + 1}`, lines: () => lines });
  return {
    lines,
    write(chunk: string) {
      lines.push(...chunk.split('\n').filter((line) => line !== ''));
    },
    entries(event?: string) {
      const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      return event === undefined ? parsed : parsed.filter((entry) => entry['event'] === event);
    },
  };
}

/** Adds what a process wrote where it logs (a child's stdout, a CLI run's stderr) to this file's logs. */
export function watchLogOutput(name: string, read: () => string): void {
  sources.push({ name, lines: () => read().split('\n') });
}

export interface Leak {
  /** What leaked: the kind of secret, or the pattern that matched. */
  readonly secret: string;
  readonly source: string;
  /** The line, each secret in it replaced by its kind. */
  readonly line: string;
}

/**
 * Shapes that are a leak whatever the value: PEM private keys, and the fields pino would have
 * redacted (src/logger.ts) holding anything but the redaction mark.
 */
const PATTERNS: readonly { readonly secret: string; readonly pattern: RegExp }[] = [
  { secret: 'a PEM private key', pattern: /-----BEGIN [A-Z ]*PRIVATE KEY-----/ },
  {
    secret: 'an unredacted secret field',
    pattern: /"(authorization|password|new_password|current_password|client_secret|refresh_token|access_token)":"(?!\[redacted\]")/i,
  },
];

/**
 * Every line of this file's logs that holds a secret it used (test/helpers/secrets.ts), as
 * typed, JSON-escaped or percent-encoded, or that matches one of PATTERNS. The signing keys of
 * running services are collected first.
 */
export async function findLeaks(): Promise<Leak[]> {
  await collectSigningKeys();
  const finder = secretFinder(knownSecrets());
  const leaks: Leak[] = [];
  for (const source of sources) {
    for (const line of source.lines()) {
      const found = finder(line);
      const matched = PATTERNS.filter(({ pattern }) => pattern.test(line)).map(({ secret }) => secret);
      for (const secret of new Set([...found.map(([, what]) => what), ...matched])) {
        leaks.push({ secret, source: source.name, line: mask(line, found).slice(0, 400) });
      }
    }
  }
  return leaks;
}

/** Throws one error that lists every leak in this file's logs. */
export async function checkLogsForSecrets(): Promise<void> {
  const leaks = await findLeaks();
  if (leaks.length === 0) return;
  const listed = leaks.map((leak) => `${leak.secret} in ${leak.source}: ${leak.line}`);
  throw new Error(`log lines that hold a secret (ATTACKS.md F3):\n  ${[...new Set(listed)].join('\n  ')}`);
}

/** The forms a secret takes in a log line: as typed, inside a JSON string, in a URL or a form body. */
function forms(secret: string): string[] {
  return [...new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret), new URLSearchParams({ s: secret }).toString().slice(2)])];
}

/**
 * A finder for many secrets in one pass over a line: the secrets are indexed by their first
 * characters, so each line is read once however many secrets there are (a file may hold
 * thousands of tokens and tens of thousands of lines).
 */
function secretFinder(secrets: ReadonlyMap<string, string>): (line: string) => [string, string][] {
  const PREFIX = MIN_SECRET_LENGTH;
  const byPrefix = new Map<string, [string, string][]>();
  for (const [secret, what] of secrets) {
    for (const form of forms(secret)) {
      const key = form.slice(0, PREFIX);
      const entries = byPrefix.get(key) ?? [];
      entries.push([form, what]);
      byPrefix.set(key, entries);
    }
  }
  return (line) => {
    const found: [string, string][] = [];
    for (let at = 0; at + PREFIX <= line.length; at++) {
      for (const candidate of byPrefix.get(line.slice(at, at + PREFIX)) ?? []) {
        if (line.startsWith(candidate[0], at)) found.push(candidate);
      }
    }
    return found;
  };
}

function mask(line: string, found: readonly [string, string][]): string {
  return found.reduce((text, [form, what]) => text.split(form).join(`[${what}]`), line);
}
