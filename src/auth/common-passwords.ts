import { dictionary } from '@zxcvbn-ts/language-common';

let common: Set<string> | undefined;

/**
 * NIST SP 800-63B §3.1.1.2 asks to refuse passwords from lists of commonly used or breached ones.
 * The list is zxcvbn-ts's frequency-ranked common passwords (about 18,000 of 8+ characters),
 * compared case-insensitively. Built on first use so start-up does not pay for it.
 */
export function isCommonPassword(password: string): boolean {
  common ??= new Set(dictionary['passwords-common'].filter((entry) => entry.length >= 8));
  return common.has(password.toLowerCase());
}
