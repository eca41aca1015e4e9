/**
 * The gateway's in-memory view of who may reach which cluster and namespace right now, so the per-request
 * check never touches the database. Rebuilt from the store when visas change (and periodically, which also
 * carries changes made by other server processes); ended visas are removed at once from the event itself.
 */
import type { Person, Visa } from '../domain/model.ts';
import { serviceAccountName } from '../domain/names.ts';
import { isProtectedNamespace } from '../domain/protected-namespaces.ts';
import type { Store } from '../store/store.ts';

export interface Grant {
  visaId: string;
  personId: string;
  cluster: string;
  namespaces: ReadonlySet<string>;
  notBefore: number;
  notAfter: number;
  profile: string;
  /** The profile asks for exec/attach sessions to be recorded. */
  recordSessions: boolean;
}

export interface PersonEntry {
  id: string;
  email: string;
  status: Person['status'];
  /** `system:serviceaccount:kubevisa-visas:<sa>`: who the gateway impersonates for this person. */
  impersonate: string;
}

export type Decision =
  | {
      ok: true;
      person: PersonEntry;
      /** Every grant that allows the request: the audit names them all. */
      grants: Grant[];
      /** The strictest of them: the first that records sessions, else the first. */
      grant: Grant;
      /** Some covering grant's profile records exec/attach sessions: the strictest rule wins. */
      recordSessions: boolean;
    }
  | { ok: false; reason: string };

export class GrantIndex {
  private byPerson = new Map<string, Grant[]>();
  private persons = new Map<string, PersonEntry>();
  private readonly store: Store;

  private readonly protectedNamespaces: readonly string[];

  /** @param protectedNamespaces what the config protects beyond the always-protected namespaces. */
  constructor(store: Store, protectedNamespaces: readonly string[] = []) {
    this.store = store;
    this.protectedNamespaces = protectedNamespaces;
  }

  /** Visas ended through an event: terminal, so a rebuild that read the store earlier must not bring them back. */
  private readonly endedVisas = new Set<string>();
  /** Persons deprovisioned through an event, with when: a rebuild that started earlier keeps them out. */
  private readonly deprovisionedAt = new Map<string, number>();

  /**
   * Set while the index cannot be confirmed against the store (it has not been read for too long: an outage, a
   * partition): what it holds may have been revoked meanwhile, so it admits nothing. Cleared by the next rebuild.
   */
  private unconfirmed: string | undefined;

  /** The index can no longer be trusted: refuse everything, saying why, until a rebuild succeeds. */
  markUnconfirmed(reason: string): void {
    this.unconfirmed = reason;
  }

  get isUnconfirmed(): boolean {
    return this.unconfirmed !== undefined;
  }

  async rebuild(): Promise<void> {
    const startedAt = Date.now();
    const [visas, persons, profiles] = await Promise.all([
      this.store.listVisasInStates(['approved', 'active']),
      this.store.listPersons(),
      this.store.listProfiles(),
    ]);
    const recorded = new Set(profiles.filter((p) => p.recordSessions).map((p) => p.name));
    const byPerson = new Map<string, Grant[]>();
    for (const visa of visas) {
      if (this.endedVisas.has(visa.id)) continue;
      const list = byPerson.get(visa.personId) ?? [];
      list.push(toGrant(visa, recorded.has(visa.profile), this.protectedNamespaces));
      byPerson.set(visa.personId, list);
    }
    this.byPerson = byPerson;
    this.persons = new Map(
      persons.map((p) => [
        p.id,
        {
          id: p.id,
          email: p.email,
          status: p.status,
          impersonate: `system:serviceaccount:kubevisa-visas:${serviceAccountName(p.email)}`,
        },
      ]),
    );
    // A deprovisioning that happened while this rebuild was reading stays in force; older ones are in the store now.
    for (const [personId, at] of this.deprovisionedAt) {
      if (at >= startedAt) {
        const entry = this.persons.get(personId);
        if (entry) this.persons.set(personId, { ...entry, status: 'deprovisioned' });
        this.byPerson.delete(personId);
      } else this.deprovisionedAt.delete(personId);
    }
    this.unconfirmed = undefined;
  }

  /** Removes ended visas at once (the rebuild that follows confirms it). */
  removeVisas(visaIds: Iterable<string>): void {
    const ids = new Set(visaIds);
    for (const id of ids) this.endedVisas.add(id);
    for (const [personId, grants] of this.byPerson) {
      const kept = grants.filter((g) => !ids.has(g.visaId));
      if (kept.length !== grants.length) this.byPerson.set(personId, kept);
    }
  }

  markDeprovisioned(personId: string): void {
    this.deprovisionedAt.set(personId, Date.now());
    const entry = this.persons.get(personId);
    if (entry) this.persons.set(personId, { ...entry, status: 'deprovisioned' });
    this.byPerson.delete(personId);
  }

  person(personId: string): PersonEntry | undefined {
    return this.persons.get(personId);
  }

  /**
   * May this person reach this cluster (and namespace, when the request names one) at `now`? A request that names
   * no namespace (discovery, cluster-scoped reads) needs some granting visa on the cluster; Kubernetes RBAC then
   * decides what the person's ServiceAccount may actually do. Every covering grant counts, not the first one found:
   * a second, weaker visa on the same namespace must not lift the recording (and protocol rule) another one asks for.
   */
  decide(personId: string, cluster: string, namespace: string | undefined, now: number): Decision {
    if (this.unconfirmed !== undefined) return { ok: false, reason: this.unconfirmed };
    const person = this.persons.get(personId);
    if (!person || person.status !== 'active') return { ok: false, reason: 'your access has been ended' };
    const grants = this.byPerson.get(personId);
    let onCluster = false;
    let covering: Grant[] | undefined;
    let strictest: Grant | undefined;
    for (const grant of grants ?? []) {
      if (grant.cluster !== cluster || now < grant.notBefore || now >= grant.notAfter) continue;
      onCluster = true;
      if (namespace !== undefined && !grant.namespaces.has(namespace)) continue;
      (covering ??= []).push(grant);
      if (strictest === undefined || (grant.recordSessions && !strictest.recordSessions)) strictest = grant;
    }
    if (covering !== undefined && strictest !== undefined)
      return { ok: true, person, grants: covering, grant: strictest, recordSessions: strictest.recordSessions };
    const upcoming = nextStart(grants ?? [], cluster, namespace, now);
    if (upcoming !== undefined) {
      const where =
        namespace === undefined ? `cluster '${cluster}'` : `namespace '${namespace}' on cluster '${cluster}'`;
      return {
        ok: false,
        reason: `your visa ${upcoming.visaId} for ${where} starts at ${new Date(upcoming.notBefore).toISOString()} (in ${startsIn(upcoming.notBefore - now)}): it is approved, try again then`,
      };
    }
    if (!onCluster)
      return {
        ok: false,
        reason: `you have no active visa on cluster '${cluster}': request one with 'kubevisa request --cluster ${cluster} …'`,
      };
    return { ok: false, reason: `your visas on cluster '${cluster}' do not cover namespace '${namespace}'` };
  }

  /** Is this visa still in the index (granting or due to start)? */
  holds(visaId: string): boolean {
    for (const grants of this.byPerson.values()) if (grants.some((g) => g.visaId === visaId)) return true;
    return false;
  }

  /** The next instant at which some grant starts or ends (for re-checking open streams), or undefined. */
  nextDeadline(now: number): number | undefined {
    let next: number | undefined;
    for (const grants of this.byPerson.values()) {
      for (const g of grants) {
        for (const t of [g.notBefore, g.notAfter]) if (t > now && (next === undefined || t < next)) next = t;
      }
    }
    return next;
  }
}

/** The grant that starts soonest after `now` on the cluster (covering the namespace, if one is named). */
function nextStart(grants: Grant[], cluster: string, namespace: string | undefined, now: number): Grant | undefined {
  let next: Grant | undefined;
  for (const grant of grants) {
    if (grant.cluster !== cluster || grant.notBefore <= now || grant.notBefore >= grant.notAfter) continue;
    if (namespace !== undefined && !grant.namespaces.has(namespace)) continue;
    if (next === undefined || grant.notBefore < next.notBefore) next = grant;
  }
  return next;
}

/** `45 s`, `12 min`, `3 h 5 min`: how long until a start, rounded up to the unit shown. */
function startsIn(ms: number): string {
  const seconds = Math.ceil(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
}

function toGrant(visa: Visa, recordSessions: boolean, protectedNamespaces: readonly string[]): Grant {
  return {
    visaId: visa.id,
    personId: visa.personId,
    cluster: visa.cluster,
    // A visa row naming a protected namespace (written by hand, or before the namespace was protected) never lets
    // the gateway through to it, whatever RBAC would say: the same rule the API and the reconciler apply.
    namespaces: new Set(visa.namespaces.filter((namespace) => !isProtectedNamespace(namespace, protectedNamespaces))),
    notBefore: visa.notBefore,
    notAfter: visa.notAfter,
    profile: visa.profile,
    recordSessions,
  };
}
