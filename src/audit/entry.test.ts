import { describe, expect, it } from 'vitest';
import { REDACTED_PATHS } from '../logger.js';
import { redactDetails, toAuditRow } from './entry.js';

describe('audit row details', () => {
  it('redacts every name the logger redacts, at any depth, and every *_hash', () => {
    const names = [...new Set(REDACTED_PATHS.filter((path) => !path.startsWith('req.')).map((path) => path.replace(/^\*\./, '')))];
    expect(names).toEqual(expect.arrayContaining(['password', 'new_password', 'client_secret', 'refresh_token', 'access_token', 'token', 'secret', 'private_key']));
    const secretOf = Object.fromEntries(names.map((name) => [name, `value-of-${name}`]));
    const redacted = redactDetails({ ...secretOf, nested: { ...secretOf, list: [secretOf] }, password_hash: '$argon2id$...', Token_Hash: 'abc' });
    const text = JSON.stringify(redacted);
    for (const name of names) expect(text).not.toContain(`value-of-${name}`);
    expect(text).not.toContain('argon2');
    expect(redacted).toMatchObject({ password: '[redacted]', nested: { token: '[redacted]', list: [{ secret: '[redacted]' }] }, password_hash: '[redacted]', Token_Hash: '[redacted]' });
  });

  it('keeps what is not secret, writes dates as ISO text and leaves out undefined members', () => {
    expect(redactDetails({ password_changed: true, sessions_ended: 2, scopes: ['a'], at: new Date(0), gone: undefined })).toEqual({
      password_changed: true,
      sessions_ended: 2,
      scopes: ['a'],
      at: '1970-01-01T00:00:00.000Z',
    });
  });

  it('takes the subject, client and address into columns, and the rest as details', () => {
    const at = new Date(0);
    const row = toAuditRow(
      { event: 'login_failed', fields: { reason: 'wrong_password', user_id: 'u1', client_id: 'c1', ip: '::1', password: 'hunter2' } },
      { actor: { type: 'client', id: 'c1' }, requestId: 'r1' },
      at,
    );
    expect(row).toEqual({
      occurred_at: at,
      type: 'login_failed',
      actor_type: 'client',
      actor_id: 'c1',
      subject: 'u1',
      client_id: 'c1',
      ip: '::1',
      request_id: 'r1',
      details: { reason: 'wrong_password', password: '[redacted]' },
    });
    // A client's own event is about the client; a login failure of an unknown user is about no one.
    expect(toAuditRow({ event: 'client_deleted', fields: { client_id: 'c2', actor: 'cli' } }, { actor: { type: 'cli', id: 'ops' } }, at).subject).toBe('c2');
    expect(toAuditRow({ event: 'login_failed', fields: { reason: 'unknown_user', client_id: 'c2' } }, { actor: { type: 'client', id: 'c2' } }, at).subject).toBeNull();
  });
});
