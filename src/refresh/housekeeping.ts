import { eraseStaleSuccessors, purgeDeadFamilies } from '../db/refresh-families.js';
import type { Deps } from '../deps.js';

const BATCH_SIZE = 500;
/** One run stops after this many batches of each kind; the next run carries on. */
const MAX_BATCHES_PER_RUN = 200;

/**
 * Deletes expired refresh families and erases sealed successors past their grace window, in small
 * batches (each its own short statement, skipping rows a refresh holds), so housekeeping never
 * holds locks on live sessions for long. Returns how many families were deleted.
 */
export async function purgeRefreshFamilies(deps: Pick<Deps, 'db' | 'clock' | 'config'>): Promise<number> {
  const now = new Date(deps.clock.now());
  const graceEnded = new Date(now.getTime() - deps.config.refreshReuseGrace * 1000);
  await inBatches(() => eraseStaleSuccessors(deps.db, graceEnded, BATCH_SIZE));
  return inBatches(() => purgeDeadFamilies(deps.db, now, deps.config.refreshTokenIdleTtl, BATCH_SIZE));
}

async function inBatches(batch: () => Promise<number>): Promise<number> {
  let total = 0;
  for (let run = 0; run < MAX_BATCHES_PER_RUN; run++) {
    const done = await batch();
    total += done;
    if (done < BATCH_SIZE) break;
  }
  return total;
}
