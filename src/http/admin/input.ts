import type { Request, RequestHandler } from 'express';
import { decodeCursor } from '../../cursor.js';
import { invalidRequest, OAuthError } from '../../oauth/errors.js';
import { readRfc3339Filter } from '../../rfc3339.js';
import { safeName } from '../form.js';

/**
 * Admin input is JSON, and strict: an unknown field is refused rather than ignored (a typo such as
 * `scope` for `scopes` must not silently change nothing), and every value has exactly one type
 * (`count`: a whole number from 1 up, or null for none).
 */
type FieldType = 'string' | 'boolean' | 'strings' | 'count' | 'object';

export interface Field {
  readonly type: FieldType;
  readonly required?: boolean;
  /** For a string: the only values it may take. */
  readonly oneOf?: readonly string[];
  /** For a string: null is accepted too (clears the value). */
  readonly nullable?: boolean;
}

export type Shape = Readonly<Record<string, Field>>;

type ValueOf<F extends Field> = F['type'] extends 'string'
  ? F extends { readonly oneOf: readonly (infer T)[] }
    ? T
    : F extends { readonly nullable: true }
      ? string | null
      : string
  : F['type'] extends 'object'
    ? Record<string, unknown>
  : F['type'] extends 'boolean'
    ? boolean
    : F['type'] extends 'count'
      ? number | null
      : string[];
type RequiredKeys<S extends Shape> = { [K in keyof S]: S[K]['required'] extends true ? K : never }[keyof S];

export type Body<S extends Shape> = { [K in RequiredKeys<S>]: ValueOf<S[K]> } & {
  [K in Exclude<keyof S, RequiredKeys<S>>]?: ValueOf<S[K]>;
};

/** Longer than any password (1 KiB), name or description Tessera keeps. */
const MAX_STRING_LENGTH = 1024;
/** Scopes, roles, grant types or audiences in one list. */
const MAX_ITEMS = 100;
const MAX_ITEM_LENGTH = 255;

/** Reads a JSON body (absent: `{}`) against its shape. */
export function readBody<S extends Shape>(body: unknown, shape: S): Body<S> {
  const input = body === undefined ? {} : body;
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalidRequest('the request body must be a JSON object');
  const result: Record<string, unknown> = Object.create(null);
  for (const [name, value] of Object.entries(input)) {
    const field = Object.hasOwn(shape, name) ? shape[name] : undefined;
    if (field === undefined) throw invalidRequest(`unknown field: ${safeName(name)}`);
    result[name] = checkValue(name, field, value);
  }
  for (const [name, field] of Object.entries(shape)) {
    if (field.required && result[name] === undefined) throw invalidRequest(`the field ${name} is required`);
  }
  return result as Body<S>;
}

function checkValue(name: string, field: Field, value: unknown): unknown {
  switch (field.type) {
    case 'boolean':
      if (typeof value !== 'boolean') throw invalidRequest(`the field ${name} must be true or false`);
      return value;
    case 'object':
      // Its members are the domain's to check (src/auth/profile.ts, src/auth/token-claims.ts).
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidRequest(`the field ${name} must be a JSON object`);
      return value;
    case 'string':
      if (value === null && field.nullable) return value;
      if (typeof value !== 'string') throw invalidRequest(`the field ${name} must be a string${field.nullable ? ' or null' : ''}`);
      if (value.length > MAX_STRING_LENGTH) throw invalidRequest(`the field ${name} is too long`);
      if (field.oneOf !== undefined && !field.oneOf.includes(value)) {
        throw invalidRequest(`the field ${name} must be one of: ${field.oneOf.join(', ')}`);
      }
      return value;
    case 'count':
      if (value !== null && !(Number.isSafeInteger(value) && (value as number) >= 1)) {
        throw invalidRequest(`the field ${name} must be a whole number from 1 up, or null`);
      }
      return value;
    case 'strings':
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
        throw invalidRequest(`the field ${name} must be an array of strings`);
      }
      if (value.length > MAX_ITEMS) throw invalidRequest(`the field ${name} has more than ${MAX_ITEMS} items`);
      if (value.some((item: string) => item.length > MAX_ITEM_LENGTH)) throw invalidRequest(`an item of the field ${name} is too long`);
      return value;
  }
}

/** A PATCH must change something: an empty one is more likely a client bug than a wish. */
export function requireSomeField(body: object): void {
  if (Object.keys(body).length === 0) throw invalidRequest('the request names nothing to change');
}

/**
 * A body, when there is one, must be JSON (RFC 9110 §15.5.16: 415 otherwise). Requests without a
 * body (a rotation, a reset with a generated password) need no Content-Type.
 */
export const requireJsonBody: RequestHandler = (req, _res, next) => {
  // type-is counts `Content-Length: 0` as a body; an empty one is no body, whatever its type.
  if (req.is('application/json') === false && req.get('content-length') !== '0') {
    throw new OAuthError('invalid_request', 'the request body must be application/json', { status: 415 });
  }
  next();
};

/** The query parameters of a listing: only these names, each at most once. */
export function readQuery(req: Request, names: readonly string[]): Readonly<Record<string, string | undefined>> {
  const result: Record<string, string | undefined> = Object.create(null);
  for (const [name, value] of Object.entries(req.query)) {
    if (!names.includes(name)) throw invalidRequest(`unknown query parameter: ${safeName(name)}`);
    if (typeof value !== 'string') throw invalidRequest(`the query parameter ${name} is repeated or malformed`);
    result[name] = value;
  }
  return result;
}

const MAX_PAGE_SIZE = 100;
const DEFAULT_PAGE_SIZE = 50;

/** Pages are bounded, so one request cannot make the service read (and hold) a whole table. */
export function readLimit(value: string | undefined): number {
  if (value === undefined) return DEFAULT_PAGE_SIZE;
  const limit = /^[0-9]{1,3}$/.test(value) ? Number(value) : NaN;
  if (!(limit >= 1 && limit <= MAX_PAGE_SIZE)) throw invalidRequest(`limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  return limit;
}

/**
 * The one paging form of every admin list: `limit` and `cursor` in, `{ items, next_cursor }` out
 * (null: this was the last page). A cursor is opaque and signed (src/cursor.ts); one that is not
 * a next_cursor this list gave is a 400.
 */
export function readCursor(keys: readonly Buffer[], list: string, cursor: string | undefined, size = 1): string[] | undefined {
  if (cursor === undefined) return undefined;
  const position = decodeCursor(keys, list, cursor, size);
  if (position === undefined) throw invalidRequest('cursor must be the next_cursor of a previous page');
  return position;
}

/** A filter that is `true` or `false`. */
export function readBooleanParameter(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value !== 'true' && value !== 'false') throw invalidRequest(`${name} must be true or false`);
  return value === 'true';
}

/** A filter that is an RFC 3339 time. */
export function readTimeParameter(name: string, value: string | undefined): Date | undefined {
  return readRfc3339Filter(name, value, invalidRequest);
}

/** `after` is the first form of paging of the users and sessions lists, kept for the clients of that form. */
export function refuseBothCursors(query: Readonly<Record<string, string | undefined>>): void {
  if (query['after'] !== undefined && query['cursor'] !== undefined) throw invalidRequest('cursor and after cannot be given together');
}
