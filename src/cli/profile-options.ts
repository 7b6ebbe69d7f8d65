import { ATTRIBUTE_NAME, isPlainObject } from '../auth/profile.js';
import type { ProfileChanges } from '../auth/accounts.js';
import { UsageError } from './command.js';

// The profile options of `users create` and `users update`: the admin API's email, email_verified,
// name and attributes, as command-line words.

/** `--attribute k=v`: a top-level attribute with a string value. */
function attributeOption(value: string): [string, string] {
  const at = value.indexOf('=');
  const name = value.slice(0, at);
  if (at < 0 || !ATTRIBUTE_NAME.test(name)) throw new UsageError('--attribute takes NAME=VALUE, NAME being 1 to 64 letters, digits, _ or -');
  return [name, value.slice(at + 1)];
}

/** `--attributes-json '{...}'`: the whole attributes object. */
function attributesJsonOption(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new UsageError('--attributes-json takes a JSON object');
  }
  if (!isPlainObject(parsed)) throw new UsageError('--attributes-json takes a JSON object');
  return parsed;
}

export const PROFILE_OPTIONS = {
  email: { value: 'EMAIL', help: 'the user\'s email address (unverified unless --email-verified is given too)' },
  'email-verified': { help: 'the email is verified (password reset mails go only to verified addresses)' },
  name: { value: 'NAME', help: 'a display name (OIDC `name`)' },
  attribute: { value: 'NAME=VALUE', repeatable: true, parse: attributeOption, help: 'set attribute NAME to the string VALUE (repeatable)' },
  'attributes-json': { value: 'JSON', parse: attributesJsonOption, help: 'all attributes as one JSON object (at most 4 KiB)' },
} as const;

/** `users update` can also take away what `users create` gives. */
export const PROFILE_UPDATE_OPTIONS = {
  ...PROFILE_OPTIONS,
  'no-email': { help: 'remove the email address' },
  'email-unverified': { help: 'the email is not verified (any more)' },
  'no-name': { help: 'remove the display name' },
  'remove-attribute': { value: 'NAME', repeatable: true, help: 'remove attribute NAME (repeatable)' },
} as const;

export interface ProfileOptionValues {
  readonly email?: string | undefined;
  readonly 'email-verified': boolean;
  readonly name?: string | undefined;
  readonly attribute?: readonly [string, string][] | undefined;
  readonly 'attributes-json'?: Record<string, unknown> | undefined;
  readonly 'no-email'?: boolean;
  readonly 'email-unverified'?: boolean;
  readonly 'no-name'?: boolean;
  readonly 'remove-attribute'?: readonly string[] | undefined;
}

/** Options that contradict each other: what is wrong, or undefined. */
export function checkProfileOptions(options: ProfileOptionValues): string | undefined {
  const pairs: [boolean, string][] = [
    [options['attributes-json'] !== undefined && (options.attribute !== undefined || options['remove-attribute'] !== undefined), '--attributes-json cannot be combined with --attribute or --remove-attribute'],
    [options.email !== undefined && options['no-email'] === true, '--email and --no-email cannot be combined'],
    [options['email-verified'] && options['email-unverified'] === true, '--email-verified and --email-unverified cannot be combined'],
    [options.name !== undefined && options['no-name'] === true, '--name and --no-name cannot be combined'],
  ];
  return pairs.find(([wrong]) => wrong)?.[1];
}

/**
 * The profile change the options describe. `--attribute` and `--remove-attribute` change
 * `current` (the user's attributes) member by member; `--attributes-json` replaces them all.
 */
export function profileFromOptions(options: ProfileOptionValues, current: Record<string, unknown> = {}): ProfileChanges {
  let attributes: Record<string, unknown> | undefined = options['attributes-json'];
  if (options.attribute !== undefined || options['remove-attribute'] !== undefined) {
    const removed = new Set(options['remove-attribute'] ?? []);
    attributes = Object.fromEntries([...Object.entries(current), ...(options.attribute ?? [])].filter(([name]) => !removed.has(name)));
  }
  return {
    email: options['no-email'] ? null : options.email,
    emailVerified: options['email-verified'] ? true : options['email-unverified'] ? false : undefined,
    name: options['no-name'] ? null : options.name,
    attributes,
  };
}

/** What the CLI prints of a profile: attributes as a JSON object with --json, as JSON text otherwise. */
export function profileView(
  user: { email: string | null; email_verified: boolean; name: string | null; attributes: Record<string, unknown> },
  json: boolean | undefined,
) {
  return { email: user.email, email_verified: user.email_verified, name: user.name, attributes: json ? user.attributes : JSON.stringify(user.attributes) };
}
