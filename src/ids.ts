const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * User and session ids are uuids. Checked before a query, so that anything else is known to name
 * nothing without asking PostgreSQL (a malformed uuid there is an error, not a miss), and so that
 * client ids can be kept from ever looking like a user id.
 */
export function isUuid(text: string): boolean {
  return UUID.test(text);
}
