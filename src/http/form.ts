import express, { type Request, type RequestHandler } from 'express';
import { invalidRequest } from '../oauth/errors.js';
import { setNoStore } from './errors.js';

export type Params = Readonly<Record<string, string | undefined>>;

/** Token-endpoint bodies are small; a password is capped at 1 KiB. Compressed bodies are refused (no inflate bombs). */
export const parseForm: RequestHandler = express.urlencoded({
  extended: false,
  limit: '16kb',
  parameterLimit: 32,
  inflate: false,
});

/** JSON bodies (for /refresh and the user endpoints) follow the same rule as forms: each parameter once. */
export const parseJson: RequestHandler = express.json({
  limit: '16kb',
  inflate: false,
  strict: true,
  verify: (_req, _res, body: Buffer) => {
    if (findDuplicateKey(body.toString('utf8')) !== undefined) {
      throw Object.assign(new Error('a JSON member is repeated'), { type: 'json.duplicate.key' });
    }
  },
});

/**
 * The first key that occurs twice in the top-level object of a JSON text (JSON.parse would silently
 * keep the last one). Undefined when there is none, or when the text is not JSON (the parser then
 * reports that).
 */
export function findDuplicateKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '{' || char === '[') depth++;
    else if (char === '}' || char === ']') depth--;
    else if (char === '"') {
      let end = i + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const literal = text.slice(i, end + 1);
      i = end;
      if (depth !== 1 || text.slice(end + 1).trimStart()[0] !== ':') continue;
      let key: unknown;
      try {
        key = JSON.parse(literal);
      } catch {
        return undefined;
      }
      if (typeof key !== 'string') return undefined;
      if (seen.has(key)) return key;
      seen.add(key);
    }
  }
  return undefined;
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
