/**
 * Last use of access: per person, per visa, and per ServiceAccount in each cluster, from two sources —
 *  (a) the gateway, which calls `recordUse(personId, visaId, at)` for every request it forwards (it reaches the
 *      tracker through the server event `'gateway-request'`, see src/server/context.ts, or directly when it holds
 *      one), and
 *  (b) kube-apiserver's audit log, for clusters people reach directly (audit-log.ts turns its lines into
 *      `recordServiceAccountUse` calls; the adapter maps ServiceAccounts to people and visas).
 * In memory, with a JSON snapshot the server persists and restores; last use only ever moves forward, so replaying
 * a source twice is harmless. No I/O here.
 */
import type { Instant } from '../domain/model.ts';
import type { JsonObject, JsonValue } from '../store/store.ts';
import type { LegacyTokenUse } from './exposure.ts';

export interface UsageSnapshot {
  persons: Record<string, Instant>;
  visas: Record<string, Instant>;
  /** Key `<cluster>/<namespace>/<name>`. */
  serviceAccounts: Record<string, Instant>;
  /** ServiceAccounts seen authenticating with a legacy (never-expiring) token; key as above. */
  legacyTokens: Record<string, Instant>;
}

export class UsageTracker {
  readonly #persons = new Map<string, Instant>();
  readonly #visas = new Map<string, Instant>();
  readonly #serviceAccounts = new Map<string, Instant>();
  readonly #legacyTokens = new Map<string, Instant>();
  #changed = false;

  /**
   * Records that a person used a visa (or only their identity, when `visaId` is undefined) at `at` (epoch ms).
   * Cheap and synchronous: the gateway calls it on its request path.
   */
  recordUse(personId: string, visaId: string | undefined, at: Instant): void {
    this.#bump(this.#persons, personId, at);
    if (visaId !== undefined) this.#bump(this.#visas, visaId, at);
  }

  /** Records a request authenticated as a ServiceAccount in a cluster (from the kube-apiserver audit log). */
  recordServiceAccountUse(cluster: string, serviceAccount: { namespace: string; name: string }, at: Instant): void {
    this.#bump(this.#serviceAccounts, `${cluster}/${serviceAccount.namespace}/${serviceAccount.name}`, at);
  }

  /** Records a request that authenticated with a legacy ServiceAccount token. */
  recordLegacyTokenUse(cluster: string, serviceAccount: { namespace: string; name: string }, at: Instant): void {
    this.#bump(this.#legacyTokens, `${cluster}/${serviceAccount.namespace}/${serviceAccount.name}`, at);
  }

  lastUseOfPerson(personId: string): Instant | undefined {
    return this.#persons.get(personId);
  }

  lastUseOfVisa(visaId: string): Instant | undefined {
    return this.#visas.get(visaId);
  }

  lastUseOfServiceAccount(cluster: string, namespace: string, name: string): Instant | undefined {
    return this.#serviceAccounts.get(`${cluster}/${namespace}/${name}`);
  }

  /** The ServiceAccounts of a cluster seen using legacy tokens, as `ns/name`. */
  legacyTokenUses(cluster: string): LegacyTokenUse[] {
    const prefix = `${cluster}/`;
    return [...this.#legacyTokens]
      .filter(([key]) => key.startsWith(prefix))
      .map(([key, lastSeen]) => ({ serviceAccount: key.slice(prefix.length), lastSeen }));
  }

  /** True when something was recorded since the last `takeChanged()`; resets the flag (for periodic saving). */
  takeChanged(): boolean {
    const changed = this.#changed;
    this.#changed = false;
    return changed;
  }

  snapshot(): UsageSnapshot {
    return {
      persons: Object.fromEntries(this.#persons),
      visas: Object.fromEntries(this.#visas),
      serviceAccounts: Object.fromEntries(this.#serviceAccounts),
      legacyTokens: Object.fromEntries(this.#legacyTokens),
    };
  }

  /** Merges a saved snapshot (later uses win); anything that is not a number is ignored. */
  restore(saved: JsonValue | undefined): void {
    if (!isObject(saved)) return;
    const merge = (target: Map<string, Instant>, value: JsonValue | undefined) => {
      if (!isObject(value)) return;
      for (const [key, at] of Object.entries(value)) if (typeof at === 'number') this.#bump(target, key, at);
    };
    merge(this.#persons, saved['persons']);
    merge(this.#visas, saved['visas']);
    merge(this.#serviceAccounts, saved['serviceAccounts']);
    merge(this.#legacyTokens, saved['legacyTokens']);
  }

  /** Drops what no longer matters (ended visas, people without access), so the snapshot stays small. */
  forget(keep: { visaIds: ReadonlySet<string>; personIds: ReadonlySet<string> }): void {
    for (const id of this.#visas.keys()) if (!keep.visaIds.has(id)) this.#visas.delete(id);
    for (const id of this.#persons.keys()) if (!keep.personIds.has(id)) this.#persons.delete(id);
  }

  #bump(map: Map<string, Instant>, key: string, at: Instant): void {
    if (!Number.isFinite(at)) return;
    const previous = map.get(key);
    if (previous === undefined || at > previous) {
      map.set(key, at);
      this.#changed = true;
    }
  }
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
