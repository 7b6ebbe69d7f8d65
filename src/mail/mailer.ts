import { createTransport } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import type { Logger } from 'pino';
import { isLoopbackHost } from '../auth/redirect-uris.js';
import type { PasswordResetConfig } from '../config.js';

export interface MailMessage {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
}

/** Sends mail through SMTP_URL from MAIL_FROM; rejects when the server cannot be reached or refuses. */
export interface Mailer {
  send(message: MailMessage): Promise<void>;
  close(): void;
}

/**
 * An SMTP server that does not answer must not hold mail work for minutes (nodemailer's defaults
 * are 2 min to connect and 10 min idle): a reset mail is tried once, and a failure is logged.
 */
const TIMEOUTS = { connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 } as const;

/**
 * Each mail is a connection of its own, open until the server answers or a timeout ends it (and a
 * server that trickles bytes resets the idle one): at most this many at once per process, so that
 * a server that hangs holds no more sockets and memory than this however many resets are asked.
 * Mail past it is refused at once (EBUSY) and logged like any other failure.
 */
export const MAX_MAILS_IN_FLIGHT = 10;

/**
 * nodemailer's options for SMTP_URL. smtps:// is TLS from the start. smtp:// uses STARTTLS when the
 * server offers it, and must when the URL holds credentials for another host: otherwise someone on
 * the path strips the offer and reads the password and every reset link. Only a relay on this
 * machine may take them in clear. logger: false, as nodemailer's own log would print the message.
 */
export function smtpTransportOptions(smtpUrl: string): SMTPTransport.Options & { url: string } {
  const url = new URL(smtpUrl);
  const credentials = url.username !== '' || url.password !== '';
  const requireTLS = url.protocol === 'smtp:' && credentials && !isLoopbackHost(url.hostname);
  return { url: smtpUrl, ...TIMEOUTS, requireTLS, logger: false, debug: false };
}

export function createMailer(config: Pick<PasswordResetConfig, 'smtpUrl' | 'mailFrom'>, log: Logger): Mailer {
  const transport = createTransport(smtpTransportOptions(config.smtpUrl), { from: config.mailFrom });
  let inFlight = 0;
  return {
    async send(message) {
      if (inFlight >= MAX_MAILS_IN_FLIGHT) throw Object.assign(new Error('too many mails in flight'), { code: 'EBUSY' });
      inFlight += 1;
      try {
        await transport.sendMail({ to: message.to, subject: message.subject, text: message.text });
      } finally {
        inFlight -= 1;
      }
    },
    close() {
      transport.close();
      log.debug('mail transport closed');
    },
  };
}
