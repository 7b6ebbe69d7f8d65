import addressparser from 'nodemailer/lib/addressparser';
import { normaliseEmail, ProfileError } from '../auth/profile.js';

/** MAIL_FROM: exactly one mailbox, `address` or `Name <address>`, with an address Tessera would accept for a user. */
export function parseAddress(text: string): { name: string; address: string } | undefined {
  const parsed = addressparser(text);
  const mailbox = parsed.length === 1 ? parsed[0] : undefined;
  if (mailbox === undefined || mailbox.address === undefined) return undefined;
  try {
    return { name: mailbox.name, address: normaliseEmail(mailbox.address) };
  } catch (error) {
    if (error instanceof ProfileError) return undefined;
    throw error;
  }
}
