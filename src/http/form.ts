import express, { type RequestHandler } from 'express';
import { invalidRequest } from '../oauth/errors.js';

export type Params = Readonly<Record<string, string | undefined>>;

/** Token-endpoint bodies are small; a password is capped at 1 KiB. Compressed bodies are refused (no inflate bombs). */
export const parseForm: RequestHandler = express.urlencoded({
  extended: false,
  limit: '16kb',
  parameterLimit: 32,
  inflate: false,
});

export const parseJson: RequestHandler = express.json({ limit: '16kb', inflate: false, strict: true });

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
function safeName(name: string): string {
  const printable = name.replace(/[^\x21\x23-\x5b\x5d-\x7e]/g, '?');
  return printable.length > 40 ? `${printable.slice(0, 40)}...` : printable;
}
