import type { Attributes } from '../db/schema.js';
import { hasControlCharacters } from './passwords.js';

// A user's profile: email, name and attributes. Pure checks, shared by the admin API, the CLI and
// /register; each returns the normalised value or throws ProfileError with a message safe to show.

export class ProfileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProfileError';
  }
}

/** RFC 5321 §4.5.3.1: a path is at most 256 octets with its brackets, so an address at most 254. */
const MAX_EMAIL_LENGTH = 254;
/** RFC 5322 §3.2.3 dot-atom (atext and dots, no leading, trailing or double dot), at most 64 (RFC 5321 §4.5.3.1.1). */
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
/** A DNS name of at least two LDH labels (RFC 1123 §2.1); an internationalised domain comes as its A-labels (xn--). */
const DOMAIN_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * An email address, normalised: white space around it trimmed and the domain lowercased (DNS names
 * are case-insensitive, RFC 4343). The local part is kept as given: RFC 5321 §2.4 lets a mail
 * server tell `Alice` from `alice`, so Tessera sends to what the user typed; uniqueness ignores
 * its case all the same (a unique index on lower(email)), so two accounts cannot differ only there.
 * Quoted local parts and address literals are refused: no one signs up with them, and they are
 * where parsers disagree.
 */
export function normaliseEmail(input: string): string {
  const email = input.trim();
  const at = email.lastIndexOf('@');
  const local = email.slice(0, at);
  const domain = email.slice(at + 1).toLowerCase();
  const labels = domain.split('.');
  const valid =
    at > 0 &&
    email.length <= MAX_EMAIL_LENGTH &&
    local.length <= 64 &&
    LOCAL_PART.test(local) &&
    labels.length >= 2 &&
    labels.every((label) => DOMAIN_LABEL.test(label)) &&
    !/^[0-9]+$/.test(labels[labels.length - 1]!);
  if (!valid) throw new ProfileError('the email is not a valid address (local-part@domain.example)');
  return `${local}@${domain}`;
}

/** The form a look-up by email compares: the whole address lowercased, as the unique index does. */
export function emailKey(email: string): string {
  return email.toLowerCase();
}

const MAX_NAME_LENGTH = 200;

/** A display name (OIDC Core §5.1 `name`): trimmed, at most 200 characters, no control characters; empty clears it. */
export function normaliseName(input: string): string | null {
  const name = input.trim().normalize('NFC');
  if ([...name].length > MAX_NAME_LENGTH || hasControlCharacters(name)) {
    throw new ProfileError(`a name has at most ${MAX_NAME_LENGTH} characters and no control characters`);
  }
  return name === '' ? null : name;
}

/** Attributes serialised as JSON take at most this many bytes (UTF-8): what bounds the claims taken from them. */
export const MAX_ATTRIBUTES_BYTES = 4096;
/** Objects and arrays inside attributes nest at most this deep (the attributes object itself is level 1). */
const MAX_ATTRIBUTE_DEPTH = 5;
/** A member name: what an `attributes.<name>` path can name. */
export const ATTRIBUTE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/**
 * Names refused at every level: attributes reach JavaScript resource servers as token claims, where
 * a deep merge or `obj[name] = value` of such a member reaches Object.prototype (prototype pollution).
 */
const PROTOTYPE_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * A user's attributes: a JSON object whose member names (at every level) are 1 to 64 letters,
 * digits, `_` or `-` (not `__proto__`, `constructor` or `prototype`), whose values are strings,
 * finite numbers, booleans, null, arrays and objects nested at most 5 deep, and which takes at
 * most 4 KiB as JSON. Returned as its JSON text.
 */
export function checkAttributes(input: unknown): { value: Attributes; json: string } {
  if (!isPlainObject(input)) throw new ProfileError('attributes must be a JSON object');
  checkValue(input, 1);
  const json = JSON.stringify(input);
  if (Buffer.byteLength(json) > MAX_ATTRIBUTES_BYTES) {
    throw new ProfileError(`attributes take at most ${MAX_ATTRIBUTES_BYTES} bytes as JSON`);
  }
  return { value: input, json };
}

function checkValue(value: unknown, depth: number): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ProfileError('attribute numbers must be finite');
    return;
  }
  if (depth > MAX_ATTRIBUTE_DEPTH) throw new ProfileError(`attributes nest at most ${MAX_ATTRIBUTE_DEPTH} levels deep`);
  if (Array.isArray(value)) {
    for (const item of value) checkValue(item, depth + 1);
    return;
  }
  if (!isPlainObject(value)) throw new ProfileError('attribute values must be JSON values');
  for (const [name, member] of Object.entries(value)) {
    if (!ATTRIBUTE_NAME.test(name)) throw new ProfileError('attribute names are 1 to 64 letters, digits, _ or -');
    if (PROTOTYPE_NAMES.has(name)) throw new ProfileError('an attribute cannot be named __proto__, constructor or prototype');
    checkValue(member, depth + 1);
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}
