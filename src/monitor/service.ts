/**
 * The monitor's adapter layer: it reads the store and the clusters, hands plain values to the pure checks
 * (exposure, drift, staleness, notices), and turns what they find into alerts, metrics and stored state. State that
 * must survive a restart — last use, the audit trail cursor, which notices were sent, the latest scan of each
 * cluster — lives in the store's settings.
 */
import { profileClusterRole, visaRoleBinding, type ClusterRole, type RoleBinding } from '../cluster/objects.ts';
import type { ListedClusterRole, ServiceAccountTokenSecret } from '../cluster/client.ts';
import type { ClusterRoleBinding, Role } from '../cluster/objects.ts';
import { ClusterForbidden } from '../cluster/errors.ts';
import { KubevisaError, NotFound } from '../domain/errors.ts';
import type { Instant, Person, Visa } from '../domain/model.ts';
import { serviceAccountName } from '../domain/names.ts';
import type { AuditEvent, JsonObject, JsonValue, Store } from '../store/store.ts';
import type { AlertDispatcher } from './alert-delivery.ts';
import type { Alert } from './alerts.ts';
import type { AuditUse } from './audit-log.ts';
import type { AlertsConfig, MonitoringConfig } from './config.ts';
import { driftFindings, type DesiredBinding } from './drift.ts';
import { analyzeExposure, buildDirectory, VISAS_NAMESPACE } from './exposure.ts';
import { diffFindings, isAlertable, sortFindings, type Finding } from './findings.ts';
import { filterMatrix, type MatrixFilter, type MatrixRow } from '../rbac/matrix.ts';
import type { MonitorMetrics } from './metrics.ts';
import {
  ALERTING_ACTIONS,
  alertFromAudit,
  expiryNotice,
  findingAlert,
  staleAlert,
  stalePersonAlert,
} from './notices.ts';
import { findStaleAccess } from './staleness.ts';
import type { UsageTracker } from './usage.ts';

/** What the monitor reads from a cluster: the whole cluster's RBAC and the token Secrets' metadata. */
export interface ExposureCluster {
  readonly name: string;
  listRoles(): Promise<Role[]>;
  listClusterRoles(): Promise<ListedClusterRole[]>;
  listRoleBindings(): Promise<RoleBinding[]>;
  listClusterRoleBindings(): Promise<ClusterRoleBinding[]>;
  listServiceAccountTokenSecrets(): Promise<ServiceAccountTokenSecret[]>;
}

export interface MonitorServiceOptions {
  store: Store;
  clusters: ReadonlyMap<string, ExposureCluster>;
  usage: UsageTracker;
  alerts: AlertDispatcher;
  metrics: MonitorMetrics;
  monitoring: MonitoringConfig;
  alertsConfig: AlertsConfig;
  /** Revokes a visa as kubevisa itself (for `revokeStale`). */
  revoke: (visaId: string, reason: string) => Promise<void>;
  /** Where problems go that no caller is waiting for (background work); never given secrets. */
  log: (message: string) => void;
  now?: () => Instant;
}

/** How complete a scan was: what could be read, and what could not and why. */
export interface ScanCoverage {
  /** `listed`, or why not (kubevisa's credential may not list Secrets, by design). */
  tokenSecrets: string;
  /** Legacy-token use from the kube-apiserver audit log: `audit log` when one is followed for the cluster. */
  legacyTokenUse: string;
}

export interface ScanResult {
  cluster: string;
  scannedAt: string;
  durations: { listMs: number; analyzeMs: number };
  counts: {
    bindings: number;
    roles: number;
    clusterRoles: number;
    subjects: number;
    grants: number;
    tokenSecrets: number;
  };
  coverage: ScanCoverage;
  findings: Finding[];
  /** Finding ids new since the previous scan, and gone since then. */
  changes: { added: string[]; resolved: string[] };
  /** With a matrix filter: the rows that pass it (at most `MATRIX_ROW_LIMIT`). */
  matrix?: MatrixRowView[];
  matrixTruncated?: boolean;
}

export interface MatrixRowView {
  subject: string;
  namespace: string;
  via: string[];
  resources: { apiGroup: string; resource: string; resourceNames: readonly string[]; verbs: readonly string[] }[];
  nonResourceURLs: { url: string; verbs: readonly string[] }[];
}

export const MATRIX_ROW_LIMIT = 5000;
const SCAN_KEY = (cluster: string) => `monitor.scan.${cluster}`;
const USAGE_KEY = 'monitor.usage';
const CURSOR_KEY = 'monitor.audit-cursor';
const NOTICES_KEY = 'monitor.notices';
/** Audit events read per query while following the trail. */
const AUDIT_PAGE = 1000;
/** How long a just-ended visa's bindings may linger before they count as drift, in ms. */
const DRIFT_GRACE_MS = 60_000;

interface NoticeState {
  /** visaId → notAfter the expiry notice was sent for (an extension is a new visa, so this stays per visa). */
  expiring: Record<string, number>;
  /** visaId → idleSince the stale alert was sent for (a use and a new idle period alert again). */
  stale: Record<string, number>;
}

export class MonitorService {
  readonly #o: MonitorServiceOptions;
  readonly #now: () => Instant;
  readonly #scans = new Map<string, Promise<ScanResult>>();
  #following: Promise<void> | undefined;
  #checking: Promise<void> | undefined;
  /** Person ServiceAccount name → person, for audit log attribution; rebuilt when a name is not found. */
  #personsBySa = new Map<string, Person>();
  #personsLoadedAt = 0;
  /** Visas by person, for attributing audit log requests to the visa that covered their namespace. */
  #visasByPerson = new Map<string, Visa[]>();
  #visasStale = true;

  constructor(options: MonitorServiceOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  // ——— Exposure scans ———

  /**
   * Scans a cluster: lists its RBAC, judges it, compares with the previous scan (new findings become alerts) and
   * stores the result. With `matrix`, also returns who can do what where, filtered. One scan per cluster at a time.
   * @throws NotFound for an unknown cluster; the cluster's errors when it cannot be listed.
   */
  async scan(cluster: string, options: { matrix?: MatrixFilter } = {}): Promise<ScanResult> {
    if (!this.#o.clusters.has(cluster)) {
      throw new NotFound(
        `no cluster '${cluster}': known clusters are ${[...this.#o.clusters.keys()].join(', ') || '(none)'}`,
      );
    }
    const running = this.#scans.get(cluster);
    if (running !== undefined && options.matrix === undefined) return running;
    const work = (running ?? Promise.resolve()).catch(() => undefined).then(() => this.#scanNow(cluster, options));
    this.#scans.set(cluster, work);
    try {
      return await work;
    } finally {
      if (this.#scans.get(cluster) === work) this.#scans.delete(cluster);
    }
  }

  /** The stored result of the latest scan, without matrix. */
  async latestScan(cluster: string): Promise<ScanResult | undefined> {
    const saved = await this.#o.store.getSetting(SCAN_KEY(cluster));
    return saved === undefined ? undefined : (saved as unknown as ScanResult);
  }

  async #scanNow(name: string, options: { matrix?: MatrixFilter }): Promise<ScanResult> {
    const cluster = this.#o.clusters.get(name)!;
    const startedAt = this.#now();
    const listStart = performance.now();
    const [roles, clusterRoles, roleBindings, clusterRoleBindings, tokenSecrets] = await Promise.all([
      cluster.listRoles(),
      cluster.listClusterRoles(),
      cluster.listRoleBindings(),
      cluster.listClusterRoleBindings(),
      cluster.listServiceAccountTokenSecrets().then(
        (secrets) => ({ secrets, coverage: 'listed' }),
        (error: unknown) => {
          if (error instanceof ClusterForbidden) {
            return {
              secrets: undefined,
              coverage:
                "not listed: kubevisa's credential may not list Secrets (by design); legacy tokens are found when they are used (audit log), or grant kubevisa 'list secrets' to find unused ones",
            };
          }
          return {
            secrets: undefined,
            coverage: `not listed: ${error instanceof Error ? error.message : String(error)}`,
          };
        },
      ),
    ]);
    const listMs = performance.now() - listStart;
    const [engagements, persons, profiles] = await Promise.all([
      this.#o.store.listEngagements(),
      this.#o.store.listPersons(),
      this.#o.store.listProfiles(),
    ]);
    const analyzeStart = performance.now();
    const directory = buildDirectory({ engagements, persons, contractorDomains: this.#o.monitoring.contractorDomains });
    const legacyTokenUses = this.#o.usage.legacyTokenUses(name);
    const analysis = analyzeExposure(
      {
        cluster: name,
        objects: { roles, clusterRoles, roleBindings, clusterRoleBindings },
        tokenSecrets: tokenSecrets.secrets,
        legacyTokenUses,
        directory,
      },
      { withMatrix: options.matrix !== undefined },
    );
    const drift = driftFindings({
      ...(await this.#desiredBindings(name, persons, startedAt)),
      actual: roleBindings.filter(
        (rb) =>
          rb.metadata.labels['app.kubernetes.io/managed-by'] === 'kubevisa' &&
          (rb.metadata.labels['kubevisa.io/visa'] ?? '') !== '',
      ),
      profileRoles: {
        desired: profiles.flatMap((profile): ClusterRole[] => {
          try {
            return [profileClusterRole(profile)];
          } catch (error) {
            // A stored profile the linter refuses today cannot be installed either: nothing to compare it with.
            if (error instanceof KubevisaError) return [];
            throw error;
          }
        }),
        actual: clusterRoles.filter((role) => role.metadata.name.startsWith('kubevisa:profile:')),
      },
      now: startedAt,
    });
    const findings = sortFindings([...analysis.findings, ...drift]);
    const analyzeMs = performance.now() - analyzeStart;

    const previous = await this.latestScan(name);
    const changes = diffFindings(previous?.findings ?? [], findings);
    const result: ScanResult = {
      cluster: name,
      scannedAt: new Date(startedAt).toISOString(),
      durations: { listMs: Math.round(listMs), analyzeMs: Math.round(analyzeMs) },
      counts: { ...analysis.counts, tokenSecrets: tokenSecrets.secrets?.length ?? 0 },
      coverage: {
        tokenSecrets: tokenSecrets.coverage,
        legacyTokenUse:
          this.#o.monitoring.auditLogs.some((log) => log.cluster === name) ||
          this.#o.monitoring.auditWebhookTokens.has(name)
            ? 'audit log'
            : 'not followed: configure monitoring.auditLogs or monitoring.auditWebhook for this cluster',
      },
      findings,
      changes: { added: changes.added.map((f) => f.id), resolved: changes.resolved.map((f) => f.id) },
    };
    await this.#o.store.transaction((tx) => tx.putSetting(SCAN_KEY(name), result as unknown as JsonValue, this.#now()));
    // The first scan of a cluster is the baseline: what was already there is in the report, not in anyone's inbox.
    if (previous !== undefined) {
      for (const finding of changes.added) {
        if (isAlertable(finding)) this.#publish(findingAlert(name, finding, startedAt));
      }
    }
    this.#o.metrics.setFindings(name, findings);
    this.#o.metrics.scanDuration.set({ cluster: name }, (listMs + analyzeMs) / 1000);
    if (options.matrix !== undefined && analysis.matrix !== undefined) {
      const rows = filterMatrix(analysis.matrix, options.matrix);
      result.matrix = rows.slice(0, MATRIX_ROW_LIMIT).map(matrixView);
      if (rows.length > MATRIX_ROW_LIMIT) result.matrixTruncated = true;
    }
    return result;
  }

  async #desiredBindings(
    cluster: string,
    persons: readonly Person[],
    now: Instant,
  ): Promise<{ desired: DesiredBinding[]; recentlyEnded: Set<string> }> {
    const active = new Map(persons.filter((p) => p.status === 'active').map((p) => [p.id, p]));
    const granting = (await this.#o.store.listVisasGrantingAt(now)).filter(
      (visa) => visa.cluster === cluster && active.has(visa.personId),
    );
    const desired = granting.flatMap((visa) =>
      visa.namespaces.map((namespace) => ({
        // As the reconciler builds it: for the holder's current email, which the IdP may have changed since.
        binding: visaRoleBinding({ visa: { ...visa, personEmail: active.get(visa.personId)!.email }, namespace }),
        since: Math.max(visa.notBefore, visa.decidedAt ?? visa.notBefore),
      })),
    );
    const grantingIds = new Set(granting.map((visa) => visa.id));
    const recentlyEnded = new Set(
      (await this.#o.store.listVisas({ cluster }))
        .filter((visa) => !grantingIds.has(visa.id))
        .filter((visa) => now - Math.min(visa.endedAt ?? visa.notAfter, visa.notAfter) < DRIFT_GRACE_MS)
        .map((visa) => visa.id),
    );
    return { desired, recentlyEnded };
  }

  // ——— The audit trail: visa lifecycle alerts, drift repairs, counters ———

  /** Reads the audit trail from where it stopped to its head. Serialised; safe to call often. */
  followAudit(): Promise<void> {
    this.#following ??= this.#followNow().finally(() => {
      this.#following = undefined;
    });
    return this.#following;
  }

  /**
   * On a first start, marks where alerts begin (the trail's head now), before any request is served. Any replica
   * may do it: the audit follower itself runs only on the leader, which a replica may become only later, and
   * events committed meanwhile must still alert. Once set, the mark is never moved back.
   */
  async startAuditCursor(): Promise<void> {
    if (typeof (await this.#o.store.getSetting(CURSOR_KEY)) === 'number') return;
    const head = (await this.#o.store.getAuditHead())?.seq ?? 0;
    await this.#o.store.transaction(async (tx) => {
      if (typeof (await tx.getSetting(CURSOR_KEY)) !== 'number') await tx.putSetting(CURSOR_KEY, head, this.#now());
    });
  }

  async #followNow(): Promise<void> {
    const head = (await this.#o.store.getAuditHead())?.seq ?? 0;
    const saved = await this.#o.store.getSetting(CURSOR_KEY);
    // First start: alerts begin now; history is in the trail, not in anyone's inbox.
    const cursor = typeof saved === 'number' ? saved : head;
    if (cursor < head) {
      const events: AuditEvent[] = [];
      for (const action of ALERTING_ACTIONS.keys()) {
        let after = cursor;
        for (;;) {
          const page = await this.#o.store.listAudit({ afterSeq: after, action, limit: AUDIT_PAGE });
          // Only up to the head read first: a later event may still be joined by an earlier one being committed.
          const upToHead = page.filter((event) => event.seq <= head);
          events.push(...upToHead);
          if (page.length < AUDIT_PAGE || upToHead.length < page.length) break;
          after = page[page.length - 1]!.seq;
        }
      }
      events.sort((a, b) => a.seq - b.seq);
      for (const event of events) await this.#onAuditEvent(event);
    }
    if (saved !== head) await this.#o.store.transaction((tx) => tx.putSetting(CURSOR_KEY, head, this.#now()));
  }

  async #onAuditEvent(event: AuditEvent): Promise<void> {
    if (event.action === 'visa.expired') {
      this.#o.metrics.expiries.inc({ cluster: event.cluster ?? '' });
      const lateness = event.details['latenessMs'];
      if (typeof lateness === 'number')
        this.#o.metrics.expiryLag.observe({ cluster: event.cluster ?? '' }, lateness / 1000);
    }
    if (event.action === 'visa.revoked') this.#o.metrics.revocations.inc({ cluster: event.cluster ?? '' });
    const visa = event.visaId === undefined ? undefined : await this.#o.store.getVisa(event.visaId);
    const sponsor = visa === undefined ? undefined : (await this.#o.store.getEngagement(visa.engagementId))?.sponsor;
    const recreated = event.action === 'cluster.rolebinding.create' && (await this.#wasRecreated(event));
    const alert = alertFromAudit(event, {
      ...(visa ? { visa } : {}),
      ...(sponsor ? { sponsor } : {}),
      ...(recreated ? { recreated } : {}),
    });
    if (alert !== undefined) this.#publish(alert);
  }

  /**
   * True when this create put back a binding that had been created before and that kubevisa did not remove since:
   * someone else deleted it. (After an edit the reconciler deletes and re-creates; that repair is alerted on its
   * delete, so it is not counted twice.)
   */
  async #wasRecreated(event: AuditEvent): Promise<boolean> {
    if (event.visaId === undefined) return false;
    const sameBinding = (other: AuditEvent) =>
      other.seq < event.seq && other.namespace === event.namespace && other.details['name'] === event.details['name'];
    const history = async (action: string) =>
      (await this.#o.store.listAudit({ visaId: event.visaId, action, limit: 10_000 })).filter(sameBinding);
    const creates = await history('cluster.rolebinding.create');
    const previous = creates.at(-1);
    if (previous === undefined) return false;
    const removals = [
      ...(await history('cluster.rolebinding.repair-delete')),
      ...(await history('cluster.rolebinding.delete')),
    ];
    return !removals.some((removal) => removal.seq > previous.seq);
  }

  // ——— Expiry notices and staleness ———

  /** Sends due expiry notices and stale-access alerts (revoking when configured). Serialised. */
  checkVisas(): Promise<void> {
    this.#checking ??= this.#checkNow().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #checkNow(): Promise<void> {
    const now = this.#now();
    const granting = await this.#o.store.listVisasGrantingAt(now);
    const state = await this.#notices();
    const sponsors = new Map<string, string | undefined>();
    const sponsorOf = async (visa: Visa) => {
      if (!sponsors.has(visa.engagementId)) {
        sponsors.set(visa.engagementId, (await this.#o.store.getEngagement(visa.engagementId))?.sponsor);
      }
      return sponsors.get(visa.engagementId);
    };
    const next: NoticeState = { expiring: {}, stale: {} };
    for (const visa of granting) {
      const sent = state.expiring[visa.id];
      if (sent === visa.notAfter) next.expiring[visa.id] = sent;
      else if (visa.notAfter - now <= this.#o.alertsConfig.expiryNoticeMs) {
        this.#publish(expiryNotice(visa, await sponsorOf(visa), now));
        next.expiring[visa.id] = visa.notAfter;
      }
    }
    const stale = findStaleAccess({
      granting,
      lastUseOfVisa: (id) => this.#o.usage.lastUseOfVisa(id),
      lastUseOfPerson: (id) => this.#o.usage.lastUseOfPerson(id),
      now,
      staleAfterMs: this.#o.monitoring.staleAfterMs,
    });
    this.#o.metrics.staleVisas.set(stale.visas.length);
    for (const entry of stale.visas) {
      if (state.stale[entry.visa.id] === entry.idleSince) {
        next.stale[entry.visa.id] = entry.idleSince;
        continue;
      }
      let revoked = false;
      if (this.#o.monitoring.revokeStale) {
        try {
          await this.#o.revoke(
            entry.visa.id,
            `unused for ${(entry.idleMs / 86_400_000).toFixed(1)} days (monitoring.revokeStale)`,
          );
          revoked = true;
        } catch (error) {
          this.#o.log(
            `could not revoke stale visa ${entry.visa.id}: ${error instanceof Error ? error.message : String(error)}`,
          );
        }
      }
      this.#publish(staleAlert(entry, await sponsorOf(entry.visa), this.#o.monitoring.staleAfterMs, revoked));
      next.stale[entry.visa.id] = entry.idleSince;
    }
    // A person idle across every visa they hold: their identity in the cluster lingers unused.
    for (const person of stale.persons) {
      const key = `person:${person.personId}`;
      if (state.stale[key] !== person.idleSince) {
        this.#publish(stalePersonAlert(person, this.#o.monitoring.staleAfterMs));
      }
      next.stale[key] = person.idleSince;
    }
    // Only visas that still grant are remembered: the state stays as small as the set of live visas.
    if (JSON.stringify(next) !== JSON.stringify(state)) {
      await this.#o.store.transaction((tx) => tx.putSetting(NOTICES_KEY, next as unknown as JsonObject, this.#now()));
    }
    this.#o.usage.forget({
      visaIds: new Set(granting.map((visa) => visa.id)),
      personIds: new Set(granting.map((visa) => visa.personId)),
    });
  }

  async #notices(): Promise<NoticeState> {
    const saved = await this.#o.store.getSetting(NOTICES_KEY);
    const record = (value: JsonValue | undefined): Record<string, number> =>
      typeof value === 'object' && value !== null && !Array.isArray(value)
        ? Object.fromEntries(
            Object.entries(value).filter((entry): entry is [string, number] => typeof entry[1] === 'number'),
          )
        : {};
    if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) return { expiring: {}, stale: {} };
    return { expiring: record(saved['expiring']), stale: record(saved['stale']) };
  }

  /** A report of every granting visa's last use, for `kubevisa scan usage`. */
  async usageReport(): Promise<JsonObject> {
    const now = this.#now();
    const granting = await this.#o.store.listVisasGrantingAt(now);
    const stale = findStaleAccess({
      granting,
      lastUseOfVisa: (id) => this.#o.usage.lastUseOfVisa(id),
      lastUseOfPerson: (id) => this.#o.usage.lastUseOfPerson(id),
      now,
      staleAfterMs: this.#o.monitoring.staleAfterMs,
    });
    const staleVisas = new Set(stale.visas.map((entry) => entry.visa.id));
    const iso = (at: Instant | undefined) => (at === undefined ? null : new Date(at).toISOString());
    return {
      generatedAt: new Date(now).toISOString(),
      staleAfterSeconds: Math.round(this.#o.monitoring.staleAfterMs / 1000),
      visas: granting.map((visa) => ({
        id: visa.id,
        personEmail: visa.personEmail,
        cluster: visa.cluster,
        namespaces: visa.namespaces,
        profile: visa.profile,
        notBefore: new Date(visa.notBefore).toISOString(),
        notAfter: new Date(visa.notAfter).toISOString(),
        lastUsedAt: iso(this.#o.usage.lastUseOfVisa(visa.id)),
        personLastUsedAt: iso(this.#o.usage.lastUseOfPerson(visa.personId)),
        stale: staleVisas.has(visa.id),
      })),
      stalePersons: stale.persons.map((person) => ({
        personId: person.personId,
        email: person.email,
        lastUsedAt: iso(person.lastUsedAt),
        idleSince: new Date(person.idleSince).toISOString(),
        visaIds: person.visaIds,
      })),
    };
  }

  // ——— Usage from kube-apiserver audit events ———

  /** Marks the visa cache for audit attribution out of date (after any visa change). */
  visasChanged(): void {
    this.#visasStale = true;
  }

  /** Records requests read from a cluster's audit log or audit webhook. */
  async ingestAuditUses(cluster: string, uses: readonly AuditUse[]): Promise<void> {
    if (uses.length === 0) return;
    this.#o.metrics.auditEventsIngested.inc({ cluster }, uses.length);
    for (const use of uses) {
      if (use.serviceAccount === undefined) continue;
      this.#o.usage.recordServiceAccountUse(cluster, use.serviceAccount, use.at);
      if (use.legacyToken) this.#o.usage.recordLegacyTokenUse(cluster, use.serviceAccount, use.at);
      if (use.serviceAccount.namespace !== VISAS_NAMESPACE) continue;
      const person = await this.#personOfServiceAccount(use.serviceAccount.name);
      if (person === undefined) continue;
      const visa = await this.#visaCovering(person.id, cluster, use.namespace, use.at);
      this.#o.usage.recordUse(person.id, visa?.id, use.at);
    }
  }

  async #personOfServiceAccount(name: string): Promise<Person | undefined> {
    const known = this.#personsBySa.get(name);
    if (known !== undefined) return known;
    // Reload at most every 10 s: an unknown account (made by hand in kubevisa-visas) must not hammer the store.
    if (this.#now() - this.#personsLoadedAt < 10_000) return undefined;
    this.#personsLoadedAt = this.#now();
    this.#personsBySa = new Map((await this.#o.store.listPersons()).map((p) => [serviceAccountName(p.email), p]));
    return this.#personsBySa.get(name);
  }

  async #visaCovering(
    personId: string,
    cluster: string,
    namespace: string | undefined,
    at: Instant,
  ): Promise<Visa | undefined> {
    if (namespace === undefined) return undefined;
    if (this.#visasStale) {
      this.#visasStale = false;
      const byPerson = new Map<string, Visa[]>();
      for (const visa of await this.#o.store.listVisasInStates(['approved', 'active', 'expired', 'revoked'])) {
        const list = byPerson.get(visa.personId);
        if (list === undefined) byPerson.set(visa.personId, [visa]);
        else list.push(visa);
      }
      this.#visasByPerson = byPerson;
    }
    return this.#visasByPerson
      .get(personId)
      ?.find(
        (visa) =>
          visa.cluster === cluster &&
          visa.namespaces.includes(namespace) &&
          visa.notBefore <= at &&
          at < Math.min(visa.notAfter, visa.endedAt ?? Number.POSITIVE_INFINITY),
      );
  }

  // ——— Persistence of usage ———

  async restoreUsage(): Promise<void> {
    this.#o.usage.restore(await this.#o.store.getSetting(USAGE_KEY));
  }

  async saveUsage(): Promise<void> {
    if (!this.#o.usage.takeChanged()) return;
    const snapshot = this.#o.usage.snapshot() as unknown as JsonObject;
    await this.#o.store.transaction((tx) => tx.putSetting(USAGE_KEY, snapshot, this.#now()));
  }

  #publish(alert: Alert): void {
    this.#o.alerts.publish(alert);
  }
}

function matrixView(row: MatrixRow): MatrixRowView {
  return {
    subject: row.subject.key,
    namespace: row.namespace,
    via: [
      ...new Set(
        row.grants.map((grant) =>
          grant.binding.kind === 'RoleBinding'
            ? `RoleBinding ${grant.binding.namespace}/${grant.binding.name} → ${grant.role.kind} ${grant.role.name} (${grant.subject.key})`
            : `ClusterRoleBinding ${grant.binding.name} → ClusterRole ${grant.role.name} (${grant.subject.key})`,
        ),
      ),
    ],
    resources: row.permissions.resources.map((p) => ({ ...p })),
    nonResourceURLs: row.permissions.nonResourceURLs.map((p) => ({ ...p })),
  };
}
