import { purgeDeadFamilies } from '../db/refresh-families.js';
import type { Deps } from '../deps.js';

const BATCH_SIZE = 500;
/** One run stops after this many batches; the next run carries on. */
const MAX_BATCHES_PER_RUN = 200;

/**
 * Deletes revoked and expired refresh families in small batches (each its own short statement,
 * skipping rows a refresh holds), so housekeeping never holds locks on live sessions for long.
 * Returns how many families were deleted.
 */
export async function purgeRefreshFamilies(deps: Pick<Deps, 'db' | 'clock' | 'config'>): Promise<number> {
  let total = 0;
  for (let batch = 0; batch < MAX_BATCHES_PER_RUN; batch++) {
    const deleted = await purgeDeadFamilies(deps.db, new Date(deps.clock.now()), deps.config.refreshTokenIdleTtl, BATCH_SIZE);
    total += deleted;
    if (deleted < BATCH_SIZE) break;
  }
  return total;
}
