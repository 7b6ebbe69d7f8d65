export const MAX_USERNAME_LENGTH = 64;

/**
 * The canonical form of a username: Unicode NFKC, then case-folded (upper- then lower-casing
 * approximates full case folding, so "ß" and "SS" meet at "ss"), then NFKC again. `Alice`, `alice`
 * and full-width `ａｌｉｃｅ` all become `alice`, and the unique index on it keeps look-alikes out.
 * Returns undefined when the result is not a username Tessera would create.
 */
export function normaliseUsername(raw: string): string | undefined {
  const folded = foldUsername(raw);
  const length = [...folded].length;
  if (length < 1 || length > MAX_USERNAME_LENGTH) return undefined;
  // No spaces, separators, controls, unassigned or private-use code points (in the spirit of PRECIS, RFC 8265).
  if (/[\p{Z}\p{C}\s]/u.test(folded)) return undefined;
  return folded;
}

/** The folding half of normaliseUsername, for text that is compared with usernames (a search). */
export function foldUsername(raw: string): string {
  return raw.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC');
}

export const USERNAME_RULES = `1 to ${MAX_USERNAME_LENGTH} characters, no spaces or control characters`;
