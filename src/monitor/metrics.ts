/**
 * Prometheus metrics (prom-client), in a registry of the server's own (not prom-client's global one, so two servers
 * in one process — the tests — never mix their numbers). Counters are bumped where things happen; gauges that
 * describe state (active visas, pending requests, reconcile lag) are read from their source at scrape time, so they
 * are never stale.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DeliveryOutcome } from './alert-delivery.ts';

export interface MetricsSources {
  /** Visas granting now per cluster, and requests waiting for a decision. */
  visaCounts(): Promise<{ activeByCluster: Map<string, number>; pending: number }>;
  /** The reconciler's last pass per cluster. */
  reconcileStatus(): { cluster: string; startedAt: number; finishedAt: number; error?: string }[];
  now?: () => number;
  /** This replica's role among replicas sharing the store (src/leader/). */
  leadership?: () => { role: 'leader' | 'follower'; epoch: number };
}

export class MonitorMetrics {
  readonly registry = new Registry();
  readonly expiries: Counter<'cluster'>;
  readonly revocations: Counter<'cluster'>;
  readonly gatewayRequests: Counter<'cluster' | 'code'>;
  readonly streamCuts: Counter<'cluster' | 'reason'>;
  readonly alertDeliveries: Counter<'sink' | 'event' | 'outcome'>;
  readonly expiryLag: Histogram<'cluster'>;
  readonly reconcilePasses: Counter<'cluster' | 'kind' | 'outcome'>;
  readonly auditEventsIngested: Counter<'cluster'>;
  readonly findings: Gauge<'cluster' | 'kind' | 'severity'>;
  readonly staleVisas: Gauge;
  readonly scanDuration: Gauge<'cluster'>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    const now = sources.now ?? Date.now;
    collectDefaultMetrics({ register: this.registry, prefix: 'kubevisa_' });
    new Gauge({
      name: 'kubevisa_visas_active',
      help: 'Visas granting access now (approved or active, inside their window), per cluster.',
      labelNames: ['cluster'],
      registers,
      async collect() {
        const { activeByCluster } = await sources.visaCounts();
        this.reset();
        for (const [cluster, count] of activeByCluster) this.set({ cluster }, count);
      },
    });
    new Gauge({
      name: 'kubevisa_visa_requests_pending',
      help: 'Visa requests waiting for approval.',
      registers,
      async collect() {
        this.set((await sources.visaCounts()).pending);
      },
    });
    this.expiries = new Counter({
      name: 'kubevisa_visa_expiries_total',
      help: 'Visas that reached their end (notAfter).',
      labelNames: ['cluster'],
      registers,
    });
    this.revocations = new Counter({
      name: 'kubevisa_visa_revocations_total',
      help: 'Visas revoked before their end.',
      labelNames: ['cluster'],
      registers,
    });
    this.gatewayRequests = new Counter({
      name: 'kubevisa_gateway_requests_total',
      help: 'Requests the gateway answered, by cluster and HTTP status code.',
      labelNames: ['cluster', 'code'],
      registers,
    });
    this.streamCuts = new Counter({
      name: 'kubevisa_gateway_stream_cuts_total',
      help: 'Open streams (watch, logs -f, exec, port-forward) the gateway closed because their visa ended.',
      labelNames: ['cluster', 'reason'],
      registers,
    });
    this.alertDeliveries = new Counter({
      name: 'kubevisa_alert_deliveries_total',
      help: 'Alert delivery attempts by sink, event and outcome (delivered, retrying, failed, dropped).',
      labelNames: ['sink', 'event', 'outcome'],
      registers,
    });
    this.expiryLag = new Histogram({
      name: 'kubevisa_reconcile_expiry_lag_seconds',
      help: 'Seconds from a visa’s notAfter to kubevisa recording its expiry and removing its access.',
      labelNames: ['cluster'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    });
    this.reconcilePasses = new Counter({
      name: 'kubevisa_reconcile_passes_total',
      help: 'Reconcile passes this replica ran, by cluster, kind (full, deadlines, visas) and outcome (ok, failed).',
      labelNames: ['cluster', 'kind', 'outcome'],
      registers,
    });
    new Gauge({
      name: 'kubevisa_reconcile_last_pass_age_seconds',
      help: 'Seconds since the reconciler last finished a pass over the cluster (reconcile lag).',
      labelNames: ['cluster'],
      registers,
      collect() {
        this.reset();
        for (const pass of sources.reconcileStatus()) {
          if (pass.finishedAt > 0) this.set({ cluster: pass.cluster }, (now() - pass.finishedAt) / 1000);
        }
      },
    });
    new Gauge({
      name: 'kubevisa_leader',
      help: '1 while this replica leads (runs the reconciler and the other leader-only loops), 0 for a follower.',
      registers,
      collect() {
        this.set(sources.leadership?.().role === 'follower' ? 0 : 1);
      },
    });
    new Gauge({
      name: 'kubevisa_leader_epoch',
      help: 'The epoch of the lease term this replica leads, or of the latest term it saw another replica lead.',
      registers,
      collect() {
        this.set(sources.leadership?.().epoch ?? 0);
      },
    });
    new Gauge({
      name: 'kubevisa_reconcile_last_pass_failed',
      help: '1 when the last reconcile pass over the cluster failed (it is retried with backoff).',
      labelNames: ['cluster'],
      registers,
      collect() {
        this.reset();
        for (const pass of sources.reconcileStatus()) this.set({ cluster: pass.cluster }, pass.error ? 1 : 0);
      },
    });
    this.auditEventsIngested = new Counter({
      name: 'kubevisa_usage_audit_events_total',
      help: 'kube-apiserver audit events read for usage tracking, per cluster.',
      labelNames: ['cluster'],
      registers,
    });
    this.findings = new Gauge({
      name: 'kubevisa_exposure_findings',
      help: 'Findings of the latest exposure scan, by cluster, kind and severity.',
      labelNames: ['cluster', 'kind', 'severity'],
      registers,
    });
    this.staleVisas = new Gauge({
      name: 'kubevisa_stale_visas',
      help: 'Visas granting access that have not been used for longer than the staleness limit.',
      registers,
    });
    this.scanDuration = new Gauge({
      name: 'kubevisa_exposure_scan_duration_seconds',
      help: 'Duration of the latest exposure scan (listing and analysis), per cluster.',
      labelNames: ['cluster'],
      registers,
    });
  }

  recordDelivery(sink: string, event: string, outcome: DeliveryOutcome): void {
    this.alertDeliveries.inc({ sink, event, outcome });
  }

  /** Replaces a cluster's finding counts with those of its latest scan. */
  setFindings(cluster: string, findings: readonly { kind: string; severity: string }[]): void {
    const counts = new Map<string, { kind: string; severity: string; count: number }>();
    for (const finding of findings) {
      const key = `${finding.kind}/${finding.severity}`;
      const entry = counts.get(key) ?? { kind: finding.kind, severity: finding.severity, count: 0 };
      entry.count++;
      counts.set(key, entry);
    }
    for (const kind of [
      'shadow-access',
      'broad-group',
      'legacy-token',
      'risky-permission',
      'dangling-binding',
      'drift',
    ]) {
      for (const severity of ['critical', 'high', 'medium', 'low', 'info']) {
        this.findings.set({ cluster, kind, severity }, counts.get(`${kind}/${severity}`)?.count ?? 0);
      }
    }
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
