import { purgeDeadFamilies } from '../db/refresh-families.js';
import type { Deps } from '../deps.js';

const BATCH_SIZE = 500;
/** One run stops after this many batches; the next run carries on. */
const MAX_BATCHES_PER_RUN = 200;

/**
 * Deletes expired refresh families in small batches (each its own short statement, skipping rows a
 * refresh holds), so housekeeping never holds locks on live sessions for long. Returns how many
 * families were deleted. A live family's sealed successor is kept, however old: a client whose
 * rotation answer was lost may retry with the parent at any time before the successor is used
 * (src/refresh/rotation.ts); it goes when the successor rotates, or the family ends.
 */
export async function purgeRefreshFamilies(deps: Pick<Deps, 'db' | 'clock' | 'config'>): Promise<number> {
  return inBatches(() => purgeDeadFamilies(deps.db, new Date(deps.clock.now()), deps.config.refreshTokenIdleTtl, BATCH_SIZE));
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
