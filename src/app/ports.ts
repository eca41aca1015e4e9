/**
 * What the application services share: the ports they run over (the store, the policy, the managed clusters'
 * names, the event bus, the clock) and the few steps every operation takes the same way (its audit event, what it
 * announces after the commit).
 */
import { NotFound } from '../domain/errors.ts';
import type { Engagement, Policy, Visa } from '../domain/model.ts';
import { effectiveState } from '../domain/visa.ts';
import type { JsonObject, Store, StoreTx } from '../store/store.ts';
import type { Caller } from './caller.ts';
import type { AppEventSink } from './events.ts';

export interface AppPorts {
  store: Store;
  policy: Policy;
  /** Names of the clusters kubevisa manages, read on every use (the configuration may grow). */
  clusterNames: () => string[];
  /**
   * The clusters of the start-up configuration, when known: any other cluster is one registered at run time, which
   * an admin may remove while this process still lists it (another replica removed it). A transaction that files or
   * approves a visa for one then holds its registration in the store and is refused when it is gone, so a removal
   * and a grant cannot both commit. Absent: no such check (a process without registered clusters).
   */
  configuredClusters?: ReadonlySet<string>;
  /** Told after each commit: clusters to converge, visas that changed or ended, people deprovisioned. */
  events: AppEventSink;
  /** The clock, epoch ms. Default: Date.now. */
  now?: () => number;
}

/** One audit event of an operation, recorded as `as` (the actor, and a person's session and client). */
export function auditAs(
  tx: StoreTx,
  as: Caller,
  event: {
    action: string;
    visa?: Visa;
    engagementId?: string;
    personId?: string;
    reason?: string;
    details?: JsonObject;
    at: number;
  },
) {
  return tx.appendAudit({
    at: event.at,
    actor: as.actor.email,
    ...(as.sessionId ? { sessionId: as.sessionId } : {}),
    action: event.action,
    ...(event.visa ? { visaId: event.visa.id, cluster: event.visa.cluster, personId: event.visa.personId } : {}),
    ...((event.engagementId ?? event.visa?.engagementId)
      ? { engagementId: event.engagementId ?? event.visa?.engagementId }
      : {}),
    ...(event.personId ? { personId: event.personId } : {}),
    outcome: 'ok',
    ...(event.reason ? { reason: event.reason } : {}),
    ...(event.details ? { details: event.details } : {}),
    ...(as.source ? { source: as.source } : {}),
  });
}

/**
 * After a commit that granted or changed access in these clusters: the reconciler and the indexes are told. With
 * `visas`, the commit changed only those (the reconciler converges just them); without, anything in the clusters may
 * have changed.
 */
export function announceChanged(events: AppEventSink, clusters: Iterable<string>, visas?: readonly Visa[]): void {
  const names = [...new Set(clusters)];
  if (names.length === 0) return;
  if (visas !== undefined && visas.length > 0)
    events.emit(
      'clusters-changed',
      names,
      visas.map((visa) => visa.id),
    );
  else events.emit('clusters-changed', names);
  events.emit('visas-changed');
}

/** After a commit that ended visas: the reconciler converges, the gateway drops them and cuts their streams. */
export function announceEnded(
  events: AppEventSink,
  visas: readonly Visa[],
  reason: string,
  extraClusters: readonly string[] = [],
): void {
  // Other clusters (an offboarding's ServiceAccounts, say) may hold more than these visas: converged in full.
  announceChanged(
    events,
    [...visas.map((v) => v.cluster), ...extraClusters],
    extraClusters.length === 0 ? visas : undefined,
  );
  const ended = visas.filter((v) => v.state === 'revoked' || v.state === 'expired' || v.state === 'cancelled');
  if (ended.length > 0) events.emit('visas-ended', ended, reason);
}

/** The visa as it stands at `now` (an approved visa whose window opened is active). */
export function withEffectiveState<T extends Visa>(visa: T, now: number): T {
  return { ...visa, state: effectiveState(visa, now) };
}

/** An engagement by id, or by name (the active one of that name first), whoever asks. */
export async function findEngagement(store: Store, idOrName: string): Promise<Engagement> {
  const byId = await store.getEngagement(idOrName);
  if (byId) return byId;
  const byName = (await store.listEngagements()).filter((e) => e.name === idOrName);
  const active = byName.find((e) => e.status === 'active') ?? byName[0];
  if (!active)
    throw new NotFound(`engagement '${idOrName}' not found: 'kubevisa engagement list' shows the ones you can see`);
  return active;
}
