/**
 * kubevisa revoking a visa on its own (`monitoring.revokeStale`), as `system:monitoring`, through the same
 * operation as a person's revoke (app/visas.ts): the visa and its extensions end in one transaction with their
 * audit events, then the reconciler and the gateway are told. A system actor passes no permission check, so it
 * never goes through AccessService, whose checks it must never pass.
 */
import { endVisaAndExtensions } from '../app/visas.ts';
import { systemActor } from '../domain/access.ts';
import type { Instant, Visa } from '../domain/model.ts';
import type { ServerEventMap } from '../server/context.ts';
import type { Store } from '../store/store.ts';

/** The events the revoke announces (a ServerEvents instance fits). */
export interface RevokeEvents {
  emit<K extends 'clusters-changed' | 'visas-changed' | 'visas-ended'>(event: K, ...args: ServerEventMap[K]): boolean;
}

/**
 * Revokes the visa and ends its extensions. @returns the revoked visa, or undefined when it does not exist.
 * @throws InvalidTransition when it no longer grants (already ended); Conflict when it kept changing meanwhile.
 */
export async function revokeAsMonitor(
  store: Store,
  events: RevokeEvents,
  visaId: string,
  reason: string,
  now: Instant,
): Promise<Visa | undefined> {
  const outcome = await endVisaAndExtensions(store, { visaId, as: { actor: systemActor('monitoring') }, reason, now });
  if (outcome === undefined) return undefined;
  const ended = [outcome.visa, ...outcome.extensions];
  events.emit('clusters-changed', [...new Set(ended.map((visa) => visa.cluster))]);
  events.emit('visas-changed');
  events.emit('visas-ended', ended, reason);
  return outcome.visa;
}
