/**
 * Leader leases for an engine that is single-process by construction (SQLite: the data folder is locked, so a
 * second server refuses to start). The one process always leads, with a fixed epoch: there is no one to take over
 * from, so there is nothing to fence against.
 */
import type { LeaderLeases } from './store.ts';

/**
 * The epoch of the one term an exclusive engine ever has. The engine's clock is this process's (SQLite has no
 * other), so `databaseNow` is `Date.now()`.
 */
export const EXCLUSIVE_EPOCH = 1;

export function exclusiveLeases(): LeaderLeases {
  return {
    exclusive: true,
    claim: async ({ holder }) => ({ holder, epoch: EXCLUSIVE_EPOCH, remainingMs: Infinity, databaseNow: Date.now() }),
    release: async () => undefined,
    readClock: async () => Date.now(),
  };
}
