import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { audit } from './events.js';
import { createLogger } from '../logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('info', destination), lines };
}

describe('audit lines', () => {
  it('carry the event, its fields and the level asked for', () => {
    const { log, lines } = capture();
    audit(log, 'token_refreshed', { client_id: 'gateway', scope: ['read', 'write'] });
    audit(log, 'refresh_token_reuse_detected', { client_id: 'gateway' }, 'warn');
    expect(lines).toMatchObject([
      { level: 'info', audit: true, event: 'token_refreshed', client_id: 'gateway', scope: ['read', 'write'], msg: 'token_refreshed' },
      { level: 'warn', audit: true, event: 'refresh_token_reuse_detected', client_id: 'gateway' },
    ]);
  });

  it('redact a secret that a flat line names at the top level', () => {
    const { log, lines } = capture();
    audit(log, 'login_failed', { password: 'hunter2', token: 't0k3n', new_password: 'n3w', client_secret: 's3cr3t', ip: '::1' });
    expect(lines[0]).toMatchObject({ password: '[redacted]', token: '[redacted]', new_password: '[redacted]', client_secret: '[redacted]', ip: '::1' });
  });

  it('redact a secret nested in an object, as every other line does', () => {
    const { log, lines } = capture();
    audit(log, 'login_failed', { err: { message: 'boom', password: 'hunter2' }, detail: [{ refresh_token: 'r' }] });
    expect(JSON.stringify(lines[0])).not.toMatch(/hunter2/);
    expect(lines[0]).toMatchObject({ err: { message: 'boom', password: '[redacted]' } });
  });
});
