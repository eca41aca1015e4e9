/**
 * What the application layer announces after a commit, and what capabilities announce to each other (the gateway's
 * requests, monitoring's alerts): one typed event bus per server, built by the composition root.
 */
import { EventEmitter } from 'node:events';
import type { Person, Visa } from '../domain/model.ts';

export interface AppEventMap {
  /** Visas stopped granting (revoked, cancelled, ended with their engagement). */
  'visas-ended': [visas: Visa[], reason: string];
  /**
   * Something changed that the reconciler must converge in these clusters: only these visas when `visaIds` is given
   * (a visa pass), anything otherwise (a full pass).
   */
  'clusters-changed': [clusters: string[], visaIds?: string[]];
  /** The reconciler finished a pass over a cluster (`kind`: full, deadlines or visas): counted in metrics. */
  'reconcile-pass': [pass: { cluster: string; kind: 'full' | 'deadlines' | 'visas'; error?: string }];
  /** A cluster was registered at run time (or found registered by another replica): serve it from now on. */
  'cluster-added': [name: string];
  /** A registered cluster was removed: stop serving it. */
  'cluster-removed': [name: string];
  /**
   * This process registered or removed a cluster (or heard that another did): every process reads the registered
   * clusters from the store again at once, rather than at its next periodic read.
   */
  'cluster-registry-changed': [];
  /** A person was deprovisioned (offboarded by an admin or by the identity provider). */
  'person-deprovisioned': [person: Person, reason: string];
  /** Any visa was created or changed state (for indexes such as the gateway's). */
  'visas-changed': [];
  /** A kubevisa session ended (logout): its access tokens must stop working everywhere at once. */
  'session-ended': [sessionId: string];
  /**
   * Changes made by other server processes may have gone unheard (the connection that hears them broke and came
   * back): whatever is cached from the store (the gateway's index and verified tokens) must be read again.
   */
  'changes-missed': [];
  /**
   * The gateway answered a request (emit once per request, after the answer): monitoring records the person's and
   * visa's last use (staleness) and counts requests by status. `at` in epoch ms; `visaId` when one visa covered it.
   */
  'gateway-request': [request: { personId: string; visaId?: string; cluster: string; status: number; at: number }];
  /** The gateway refused a request for a configured cluster: counted in metrics, not a use of any visa. */
  'gateway-refusal': [refusal: { cluster: string; status: number }];
  /** The gateway closed an open stream because its visa ended (expired, revoked, offboarded): counted in metrics. */
  'stream-cut': [cut: { cluster: string; visaId: string; reason: string }];
  /** The audit trail failed verification (wrong hash, gap, rollback): monitoring raises an alert. */
  'audit-verification-failed': [failure: { at: number; message: string; seq?: number }];
}

export class AppEvents extends EventEmitter<AppEventMap> {}

/** The announcing half, which is all the application services need (an AppEvents fits; tests pass their own). */
export interface AppEventSink {
  emit<K extends keyof AppEventMap>(event: K, ...args: AppEventMap[K]): boolean;
}
