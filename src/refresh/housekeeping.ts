import { purgeAuditEventsBefore } from '../db/audit-events.js';
import { purgeResetTokens } from '../db/password-reset-tokens.js';
import { purgeDeadBrowserSessions } from '../db/browser-sessions.js';
import { purgeDeadFamilies } from '../db/refresh-families.js';
import type { Deps } from '../deps.js';

/** How a purge is cut up: families per batch, and batches per run (the next run carries on). */
export interface PurgeBatches {
  readonly size: number;
  readonly maxPerRun: number;
}

/**
 * Deletes expired refresh families in small batches (each its own short statement, skipping rows a
 * refresh holds), so housekeeping never holds locks on live sessions for long. Returns how many
 * families were deleted. A live family's sealed successor is kept, however old: a client whose
 * rotation answer was lost may retry with the parent at any time before the successor is used
 * (src/refresh/rotation.ts); it goes when the successor rotates, or the family ends.
 */
export async function purgeRefreshFamilies(
  deps: Pick<Deps, 'db' | 'clock' | 'config'>,
  batches: PurgeBatches = { size: 500, maxPerRun: 200 },
): Promise<number> {
  return inBatches(batches, () => purgeDeadFamilies(deps.db, new Date(deps.clock.now()), deps.config.refreshTokenIdleTtl, batches.size));
}

/** Deletes browser sessions (hosted sign-in) past their lifetime, with their authorization codes. */
export async function purgeBrowserSessions(
  deps: Pick<Deps, 'db' | 'clock'>,
  batches: PurgeBatches = { size: 500, maxPerRun: 200 },
): Promise<number> {
  return inBatches(batches, () => purgeDeadBrowserSessions(deps.db, new Date(deps.clock.now()), batches.size));
}

/** Deletes audit events older than AUDIT_RETENTION, in batches like the families. Returns how many. */
export async function purgeAuditEvents(
  deps: Pick<Deps, 'db' | 'clock' | 'config'>,
  batches: PurgeBatches = { size: 1000, maxPerRun: 200 },
): Promise<number> {
  const before = new Date(deps.clock.now() - deps.config.auditRetention * 1000);
  return inBatches(batches, () => purgeAuditEventsBefore(deps.db, before, batches.size));
}

async function inBatches(batches: PurgeBatches, batch: () => Promise<number>): Promise<number> {
  let total = 0;
  for (let run = 0; run < batches.maxPerRun; run++) {
    const done = await batch();
    total += done;
    if (done < batches.size) break;
  }
  return total;
}

/** Password-reset tokens that can never be used again (expired or used, a day on): one statement, they are few. */
export async function purgePasswordResetTokens(deps: Pick<Deps, 'db' | 'clock'>): Promise<number> {
  return purgeResetTokens(deps.db, new Date(deps.clock.now()));
}
