import type { OutgoingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { findMismatches, type RecordedResponse } from './helpers/openapi.js';

// The response check of test/helpers/openapi.ts must keep failing what openapi.yaml does not
// describe: these are the mistakes it exists to catch.

const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache', 'x-request-id': 'test-1' };
const JSON_TYPE = { 'content-type': 'application/json; charset=utf-8' };

function response(
  method: string,
  path: string,
  status: number,
  headers: OutgoingHttpHeaders,
  body?: unknown,
  preflight = false,
): RecordedResponse {
  const text = body === undefined ? '' : JSON.stringify(body);
  return { test: undefined, method, path, preflight, status, headers, body: Buffer.from(text) };
}

const notFound = { error: 'invalid_request', error_description: 'there is no such endpoint' };

describe('the openapi.yaml response check', () => {
  it('accepts a response the document describes', async () => {
    expect(await findMismatches(response('GET', '/healthz', 200, { ...NO_STORE, ...JSON_TYPE }, { status: 'ok' }))).toEqual([]);
    expect(await findMismatches(response('HEAD', '/healthz', 200, { ...NO_STORE, ...JSON_TYPE }))).toEqual([]);
  });

  it('refuses a status the operation does not document', async () => {
    expect(await findMismatches(response('GET', '/healthz', 418, { ...NO_STORE, ...JSON_TYPE }, { status: 'ok' }))).toEqual([
      'status 418 is not documented for GET /healthz',
    ]);
  });

  it('refuses a body that does not match the schema, or the wrong media type', async () => {
    expect(await findMismatches(response('GET', '/healthz', 200, { ...NO_STORE, ...JSON_TYPE }, { status: 'fine' }))).toEqual([
      'body: /status must be equal to constant',
    ]);
    expect(await findMismatches(response('GET', '/healthz', 200, { ...NO_STORE, 'content-type': 'text/plain' }, { status: 'ok' }))).toEqual([
      'Content-Type text/plain is not documented (application/json is)',
    ]);
  });

  it('refuses a missing required header and a header that breaks its schema', async () => {
    const { 'x-request-id': _, ...withoutId } = NO_STORE;
    expect(await findMismatches(response('GET', '/healthz', 200, { ...withoutId, ...JSON_TYPE }, { status: 'ok' }))).toEqual([
      'the required header X-Request-Id is missing',
    ]);
    expect(await findMismatches(response('GET', '/healthz', 200, { ...NO_STORE, pragma: 'cache', ...JSON_TYPE }, { status: 'ok' }))).toEqual([
      'header Pragma: must be equal to constant',
    ]);
  });

  it('refuses a body where the document has none', async () => {
    const revoked = { ...NO_STORE, ratelimit: '"client"; r=5; t=60', 'ratelimit-policy': '"client"; q=6; w=60; pk=:MDUxMjMyNzM4NWIw:' };
    expect(await findMismatches(response('POST', '/revoke', 200, revoked))).toEqual([]);
    expect(await findMismatches(response('POST', '/revoke', 200, { ...revoked, ...JSON_TYPE }, { revoked: true }))).toEqual([
      'the response has a body, but no content is documented',
    ]);
  });

  it('takes a method a path does not serve only as its documented 405', async () => {
    const methodNotAllowed = { error: 'invalid_request', error_description: 'this endpoint accepts POST only' };
    expect(await findMismatches(response('GET', '/token', 405, { ...NO_STORE, ...JSON_TYPE, allow: 'POST' }, methodNotAllowed))).toEqual([]);
    expect(await findMismatches(response('GET', '/token', 405, { ...NO_STORE, ...JSON_TYPE }, methodNotAllowed))).toEqual([
      'the required header Allow is missing',
    ]);
    expect(await findMismatches(response('GET', '/token', 200, { ...NO_STORE, ...JSON_TYPE }, {}))).toEqual([
      'GET is not served at /token: the answer must be 405 (or 404)',
    ]);
  });

  it('takes an unknown path only as the documented 404 or CORS preflight', async () => {
    expect(await findMismatches(response('GET', '/nope', 404, { ...NO_STORE, ...JSON_TYPE }, notFound))).toEqual([]);
    expect(await findMismatches(response('OPTIONS', '/nope', 204, { vary: 'Origin', 'x-request-id': 'test-1' }, undefined, true))).toEqual([]);
    expect(await findMismatches(response('GET', '/nope', 200, { ...NO_STORE, ...JSON_TYPE }, {}))).toEqual(['/nope is not a path in openapi.yaml']);
  });

  it('checks the admin API and /metrics like every other path', async () => {
    const admin = { ...NO_STORE, ratelimit: '"admin"; r=5999; t=60', 'ratelimit-policy': '"admin"; q=6000; w=60; pk=:MDUxMjMyNzM4NWIw:' };
    const user = {
      id: '0b6c4f7e-3d2a-4c1e-9a57-8f2d1e6b4c3a',
      username: 'alice',
      disabled: false,
      roles: [],
      scopes: ['profile'],
      created_at: '2026-03-02T09:15:00.000Z',
      updated_at: '2026-03-02T09:15:00.000Z',
      password_changed_at: '2026-03-02T09:15:00.000Z',
      email: 'alice@example.com',
      email_verified: true,
      name: null,
      attributes: { tenant: 'acme' },
    };
    expect(await findMismatches(response('GET', `/admin/users/${user.id}`, 200, { ...admin, ...JSON_TYPE }, user))).toEqual([]);
    // A hash must never be shown: the document lists every member a user has.
    expect(await findMismatches(response('GET', `/admin/users/${user.id}`, 200, { ...admin, ...JSON_TYPE }, { ...user, password_hash: '$argon2id$...' }))).toEqual([
      'body: must NOT have additional properties',
    ]);
    expect(await findMismatches(response('GET', '/admin/users', 200, JSON_TYPE, { users: [] }))).not.toEqual([]);
    expect(await findMismatches(response('GET', '/metrics', 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }, undefined))).toEqual([]);
    expect(await findMismatches(response('GET', '/administrators', 200, JSON_TYPE, {}))).toEqual(['/administrators is not a path in openapi.yaml']);
  });
});
