import express, { type Request, type RequestHandler } from 'express';
import { invalidRequest } from '../oauth/errors.js';
import { setNoStore } from './errors.js';

export type Params = Readonly<Record<string, string | undefined>>;

/**
 * Bodies are read in UTF-8 only (RFC 8259 §8.1 for JSON, RFC 6749 Appendix B for forms), and
 * refused before anything decodes them otherwise: body-parser would decode any `utf-*` JSON and
 * ISO-8859-1 forms, and a check made on one decoding of the bytes says nothing of another (a
 * repeated member in UTF-16 went unseen by a duplicate check reading UTF-8). `encoding` is the
 * charset body-parser found (lower-cased), or its default, utf-8.
 */
function requireUtf8(encoding: string): void {
  if (encoding !== 'utf-8') throw refusal('charset.unsupported');
}

/** What a `verify` hook throws: body-parser passes it on, and src/http/errors.ts answers by its `type`. */
function refusal(type: string): Error {
  return Object.assign(new Error(type), { type });
}

/** Token-endpoint bodies are small; a password is capped at 1 KiB. Compressed bodies are refused (no inflate bombs). */
export const parseForm: RequestHandler = express.urlencoded({
  extended: false,
  limit: '16kb',
  parameterLimit: 32,
  inflate: false,
  verify: (_req, _res, _body, encoding) => requireUtf8(encoding),
});

/**
 * JSON bodies (for /refresh, the user endpoints and the admin API) follow the same rule as forms:
 * an object, each member once. The checks read the same UTF-8 text the parser then parses.
 */
export const parseJson: RequestHandler = express.json({
  limit: '16kb',
  inflate: false,
  strict: true,
  verify: (_req, _res, body: Buffer, encoding) => {
    requireUtf8(encoding);
    const text = body.toString('utf8');
    if (isJsonButNotObject(text)) throw refusal('json.not.object');
    if (findDuplicateKey(text) !== undefined) throw refusal('json.duplicate.key');
  },
});

/** Valid JSON whose value is not an object (an array, a string, a number, true, false, null). */
export function isJsonButNotObject(text: string): boolean {
  // A UTF-8 byte order mark may be ignored (RFC 8259 §8.1), as the parser does: trimStart drops it
  // with the white space (U+FEFF is white space to ECMAScript, not to JSON.parse).
  const start = text.trimStart();
  if (start.startsWith('{')) return false;
  try {
    JSON.parse(start);
    return true;
  } catch {
    return false; // not JSON at all: the parser says so
  }
}

/**
 * The first member name that occurs twice in one object, at any depth, of a JSON text (JSON.parse
 * would silently keep the last one, RFC 8259 §4). Undefined when there is none, or when the text is
 * not JSON (the parser then reports that).
 */
export function findDuplicateKey(text: string): string | undefined {
  // One entry per open `{` (the names seen in it) or `[` (undefined: an array has no names).
  const open: (Set<string> | undefined)[] = [];
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '{') open.push(new Set());
    else if (char === '[') open.push(undefined);
    else if (char === '}' || char === ']') open.pop();
    else if (char === '"') {
      let end = i + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const literal = text.slice(i, end + 1);
      i = end;
      const names = open.at(-1);
      if (names === undefined || !isFollowedByColon(text, end + 1)) continue;
      // From a quote to a quote: a string, or not JSON at all.
      let name: string;
      try {
        name = JSON.parse(literal) as string;
      } catch {
        return undefined;
      }
      if (names.has(name)) return name;
      names.add(name);
    }
  }
  return undefined;
}

/** Whether the next character after `from` that is not JSON whitespace is a colon (a member name ends there). */
function isFollowedByColon(text: string, from: number): boolean {
  const colon = /[ \t\n\r]*:/y; // sticky: from `from` on, and nowhere else
  colon.lastIndex = from;
  return colon.test(text);
}

/**
 * RFC 6749 §3.2: parameters are sent once each as application/x-www-form-urlencoded strings. A
 * repeated parameter or any non-string value is invalid_request. The result has no prototype, so
 * `constructor` or `__proto__` in a body are just names.
 */
export function readParams(body: unknown): Params {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('the request body must be a set of parameters');
  }
  const params: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(body)) {
    if (Array.isArray(value)) throw invalidRequest(`the parameter ${safeName(name)} is repeated`);
    if (typeof value !== 'string') throw invalidRequest(`the parameter ${safeName(name)} must be a string`);
    params[name] = value;
  }
  return params;
}

/** Parameter names are echoed in descriptions: RFC 6749 §5.2 allows %x20-21 / %x23-5B / %x5D-7E there. */
export function safeName(name: string): string {
  const printable = name.replace(/[^\x21\x23-\x5b\x5d-\x7e]/g, '?');
  return printable.length > 40 ? `${printable.slice(0, 40)}...` : printable;
}

// The steps every endpoint that takes parameters begins with.

export const requireFormOrJson: RequestHandler = (req, _res, next) => {
  if (!req.is(['application/x-www-form-urlencoded', 'application/json'])) {
    throw invalidRequest('the request body must be application/x-www-form-urlencoded or application/json');
  }
  next();
};

export const noStore: RequestHandler = (_req, res, next) => {
  setNoStore(res);
  next();
};

export const requireForm: RequestHandler = (req, _res, next) => {
  if (!req.is('application/x-www-form-urlencoded')) {
    throw invalidRequest('the request body must be application/x-www-form-urlencoded');
  }
  next();
};

/** RFC 6749 §3.2 and §2.3.1: parameters (and above all credentials) never travel in the URL. */
export function rejectQueryParameters(req: Request): void {
  if (req.url.includes('?')) throw invalidRequest('parameters must be sent in the request body, not the URL');
}
