import type { AddressInfo } from 'node:net';
import { type ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/** A mail the sink received, as an SMTP client delivered it and as mailparser reads it. */
export interface ReceivedMail {
  readonly envelopeTo: string[];
  readonly parsed: ParsedMail;
}

export interface SmtpSink {
  /** smtp://127.0.0.1:<port> */
  readonly url: string;
  readonly received: ReceivedMail[];
  /** The next mail not yet taken, waiting up to `timeoutMs` for it. */
  next(timeoutMs?: number): Promise<ReceivedMail>;
  /** From now on, each message is accepted only after this long (a slow mail server). */
  delayAcceptance(ms: number): void;
  close(): Promise<void>;
}

/**
 * A real SMTP server on a free loopback port (smtp-server, by the nodemailer authors), taking
 * every message without authentication and keeping it for the test. No STARTTLS: it would offer
 * a self-signed certificate, and what is tested is Tessera's mail, not TLS.
 */
export async function startSmtpSink(): Promise<SmtpSink> {
  const received: ReceivedMail[] = [];
  const waiting: ((mail: ReceivedMail) => void)[] = [];
  let taken = 0;
  let delay = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((parsed) => {
          const mail = { envelopeTo: session.envelope.rcptTo.map((rcpt) => rcpt.address), parsed };
          setTimeout(() => {
            received.push(mail);
            waiting.shift()?.(mail);
            callback();
          }, delay);
        })
        .catch(callback);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    next(timeoutMs = 10_000) {
      if (taken < received.length) return Promise.resolve(received[taken++]!);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no mail arrived')), timeoutMs);
        waiting.push((mail) => {
          clearTimeout(timer);
          taken += 1;
          resolve(mail);
        });
      });
    },
    delayAcceptance(ms) {
      delay = ms;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
