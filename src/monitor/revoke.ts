/**
 * kubevisa revoking a visa on its own (`monitoring.revokeStale`), as `system:monitoring`, through the application
 * layer's revoke (VisaService.revokeAs, the operation a person's revoke runs after its permission check): the visa
 * and its extensions end in one transaction with their audit events, then the reconciler and the gateway are told.
 */
import { systemCaller } from '../app/caller.ts';
import type { VisaService } from '../app/visas.ts';
import type { Visa } from '../domain/model.ts';

/** The actor monitoring's revocations are recorded as. */
export const MONITOR_CALLER = systemCaller('monitoring');

/**
 * Revokes the visa and ends its extensions. @returns the revoked visa, or undefined when it does not exist.
 * @throws InvalidTransition when it no longer grants (already ended); Conflict when it kept changing meanwhile.
 */
export function revokeAsMonitor(
  visas: Pick<VisaService, 'revokeAs'>,
  visaId: string,
  reason: string,
): Promise<Visa | undefined> {
  return visas.revokeAs(MONITOR_CALLER, visaId, reason);
}
