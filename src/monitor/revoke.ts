/**
 * kubevisa revoking a visa on its own (`monitoring.revokeStale`), as `system:monitoring`: the same steps as a
 * person's revoke — the state change and its audit event in one transaction, then the reconciler and the gateway
 * told — but not through AccessService, whose permission checks a system actor must never pass.
 */
import { systemActor } from '../domain/access.ts';
import type { Instant, Visa } from '../domain/model.ts';
import { revokeVisa } from '../domain/visa.ts';
import type { ServerEventMap } from '../server/context.ts';
import type { Store } from '../store/store.ts';

/** The events the revoke announces (a ServerEvents instance fits). */
export interface RevokeEvents {
  emit<K extends 'clusters-changed' | 'visas-changed' | 'visas-ended'>(event: K, ...args: ServerEventMap[K]): boolean;
}

/**
 * Revokes the visa. @returns the revoked visa, or undefined when it does not exist.
 * @throws InvalidTransition when it no longer grants (already ended); Conflict when it changed meanwhile.
 */
export async function revokeAsMonitor(
  store: Store,
  events: RevokeEvents,
  visaId: string,
  reason: string,
  now: Instant,
): Promise<Visa | undefined> {
  const revoked = await store.transaction(async (tx) => {
    const visa = await tx.getVisa(visaId);
    if (visa === undefined) return undefined;
    const saved = await tx.updateVisa(revokeVisa(visa, systemActor('monitoring'), reason, now), visa.version);
    await tx.appendAudit({
      at: now,
      actor: 'system:monitoring',
      action: 'visa.revoked',
      visaId: saved.id,
      personId: saved.personId,
      engagementId: saved.engagementId,
      cluster: saved.cluster,
      outcome: 'ok',
      reason,
    });
    return saved;
  });
  if (revoked === undefined) return undefined;
  events.emit('clusters-changed', [revoked.cluster]);
  events.emit('visas-changed');
  events.emit('visas-ended', [revoked], reason);
  return revoked;
}
