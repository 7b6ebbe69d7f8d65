import { describe, expect, it } from 'vitest';
import { smtpTransportOptions } from './mailer.js';

describe('smtpTransportOptions', () => {
  it('requires STARTTLS on smtp:// when the URL holds credentials for another host', () => {
    expect(smtpTransportOptions('smtp://user:secret@mail.example.com:587').requireTLS).toBe(true);
    expect(smtpTransportOptions('smtp://user@mail.example.com:587').requireTLS).toBe(true);
  });

  it('leaves a relay without credentials, one on this machine, and smtps:// as they are', () => {
    expect(smtpTransportOptions('smtp://mail.example.com:25').requireTLS).toBe(false);
    for (const host of ['127.0.0.1', '[::1]', 'localhost']) expect(smtpTransportOptions(`smtp://user:secret@${host}:25`).requireTLS).toBe(false);
    expect(smtpTransportOptions('smtps://user:secret@mail.example.com:465')).toMatchObject({ requireTLS: false, url: 'smtps://user:secret@mail.example.com:465' });
  });

  it('never lets nodemailer log a message', () => {
    expect(smtpTransportOptions('smtp://127.0.0.1:25')).toMatchObject({ logger: false, debug: false });
  });
});
