import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Opaque page cursors of the admin lists and the audit log: the position a page ended at, as JSON
 * in base64url, with an HMAC under a key derived from KEY_ENCRYPTION_KEYS (the same on every
 * replica and in the CLI). A cursor edited by hand, cut short or taken from another list is
 * refused, never read as some other position; one made before a key rotation still opens with the
 * older key. Cursors hold names and ids an admin may see anyway: they are signed, not secret.
 */
export const CURSOR_KEY_PURPOSE = 'list cursor';

const TAG_BYTES = 16;
const MAX_CURSOR_LENGTH = 2048;

function tag(key: Buffer, list: string, payload: string): Buffer {
  return createHmac('sha256', key).update(`${list}\n${payload}`).digest().subarray(0, TAG_BYTES);
}

/** The cursor of `list` (`users`, `audit`...) that starts after `position`. */
export function encodeCursor(keys: readonly Buffer[], list: string, position: readonly string[]): string {
  const payload = Buffer.from(JSON.stringify(position)).toString('base64url');
  return `${payload}.${tag(keys[0]!, list, payload).toString('base64url')}`;
}

/** The position a cursor of `list` holds (as many strings as `size`), or undefined when it is not one this service made. */
export function decodeCursor(keys: readonly Buffer[], list: string, cursor: string, size: number): string[] | undefined {
  if (cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(cursor)) return undefined;
  const [payload, mac] = cursor.split('.') as [string, string];
  const presented = Buffer.from(mac, 'base64url');
  if (presented.length !== TAG_BYTES || !keys.some((key) => timingSafeEqual(tag(key, list, payload), presented))) return undefined;
  try {
    const position: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    return Array.isArray(position) && position.length === size && position.every((part) => typeof part === 'string') ? position : undefined;
  } catch {
    return undefined;
  }
}

/** One page of `rows` (fetched with limit + 1) and the cursor of the next. */
export function cursorPage<T>(
  keys: readonly Buffer[],
  list: string,
  rows: readonly T[],
  limit: number,
  position: (row: T) => readonly string[],
): { items: T[]; next_cursor: string | null } {
  const items = rows.slice(0, limit);
  return { items, next_cursor: rows.length > limit ? encodeCursor(keys, list, position(items[items.length - 1]!)) : null };
}
