/**
 * Plugs monitoring into the server (an Extension, see src/server/extensions.ts): usage and staleness, exposure
 * scans, alerts and Prometheus metrics, configured by the `monitoring` and `alerts` sections.
 *
 * Routes:
 *   GET  /metrics                                   Prometheus text (bearer token when monitoring.metrics is set)
 *   POST /api/v1/monitoring/scans/:cluster          scan now (admins, auditors); ?subject=&namespace=&verb=&resource=
 *                                                   (or ?matrix=true) adds who-can-do-what rows
 *   GET  /api/v1/monitoring/scans/:cluster          the latest stored scan
 *   GET  /api/v1/monitoring/usage                   last use of every granting visa, stale ones marked
 *   POST /api/v1/monitoring/audit-events/:cluster   kube-apiserver's audit webhook backend (its own bearer token)
 *
 * Server events it listens to (src/server/context.ts): visa changes kick the audit trail follower (lifecycle
 * alerts); `gateway-request` records last use and counts requests, `gateway-refusal` counts refusals; `stream-cut` counts cuts;
 * `audit-verification-failed` raises an alert.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Unauthenticated } from '../domain/errors.ts';
import type { ServerContext } from '../server/context.ts';
import { AlertDispatcher, webhookSink } from './alert-delivery.ts';
import { parseAuditLine, parseAuditPayload, type AuditUse } from './audit-log.ts';
import { tailFile, type Tail, type TailPosition } from './audit-log-tail.ts';
import { parseAlertsConfig, parseMonitoringConfig } from './config.ts';
import { MonitorMetrics } from './metrics.ts';
import { auditFailureAlert } from './notices.ts';
import { revokeAsMonitor } from './revoke.ts';
import { MonitorService } from './service.ts';
import { UsageTracker } from './usage.ts';

/** The audit trail is followed this often for lifecycle alerts (ms), besides a kick after every visa change. */
const AUDIT_FOLLOW_INTERVAL_MS = 2000;
/** Last-use records are saved this often when they changed (ms). */
const USAGE_SAVE_INTERVAL_MS = 10_000;
/** Largest audit webhook batch accepted (bytes); kube-apiserver's default batch is far smaller. */
const AUDIT_WEBHOOK_BODY_LIMIT = 32 * 1024 * 1024;

const log = (message: string): void => {
  process.stderr.write(`kubevisa monitoring: ${message}\n`);
};

export async function wireMonitoring(context: ServerContext): Promise<MonitoringHandle> {
  const clusterNames = [...context.clusters.keys()];
  const monitoring = parseMonitoringConfig(context.config.extensions['monitoring'], {
    baseDir: context.config.dataDir,
    clusterNames,
  });
  const alertsConfig = parseAlertsConfig(context.config.extensions['alerts'], {
    baseDir: context.config.dataDir,
    defaultExpiryNoticeMs: context.config.policy.expiryNoticeSeconds * 1000,
  });
  const { store, events } = context;

  const metrics = new MonitorMetrics({
    now: context.now,
    async visaCounts() {
      const now = context.now();
      const activeByCluster = new Map<string, number>([...context.clusters.keys()].map((name) => [name, 0]));
      for (const visa of await store.listVisasGrantingAt(now)) {
        activeByCluster.set(visa.cluster, (activeByCluster.get(visa.cluster) ?? 0) + 1);
      }
      return { activeByCluster, pending: (await store.listVisas({ state: 'requested' })).length };
    },
    reconcileStatus: () => context.reconciler.status(),
    leadership: () => context.leadership.status(),
  });
  const alerts = new AlertDispatcher({
    sinks: alertsConfig.sinks.map((sink) =>
      webhookSink({
        name: sink.name,
        url: sink.url,
        format: sink.type,
        ...(sink.secret === undefined ? {} : { secret: sink.secret }),
        ...(sink.events === undefined ? {} : { events: sink.events }),
      }),
    ),
    retry: alertsConfig.retry,
    attemptTimeoutMs: alertsConfig.attemptTimeoutMs,
    onOutcome({ sink, alert, outcome, attempt, error }) {
      metrics.recordDelivery(sink, alert.event, outcome);
      if (outcome === 'failed' || outcome === 'dropped') {
        log(`alert ${alert.id} to sink '${sink}' ${outcome} after ${attempt} attempt(s)${error ? `: ${error}` : ''}`);
      }
    },
  });
  const usage = new UsageTracker();
  const service = new MonitorService({
    now: context.now,
    store,
    clusters: context.clusters,
    usage,
    alerts,
    metrics,
    monitoring,
    alertsConfig,
    log,
    async revoke(visaId, reason) {
      await revokeAsMonitor(context.visas, visaId, reason);
    },
  });
  await service.restoreUsage();

  // ——— Background work ———
  // Work nobody waits for; tracked so stopping waits for it before the store closes under it.
  const running = new Set<Promise<unknown>>();
  let stopping = false;
  const background = (what: string, work: () => Promise<unknown>) => {
    if (stopping) return;
    const done = work()
      .catch((error: unknown) => log(`${what} failed: ${error instanceof Error ? error.message : String(error)}`))
      .finally(() => running.delete(done));
    running.add(done);
  };
  const timers: NodeJS.Timeout[] = [];
  // Checks, scans and the audit-trail follower publish alerts and findings and may revoke: one replica runs them.
  const every = (ms: number, what: string, work: () => Promise<unknown>, leaderOnly = true) => {
    const timer = setInterval(() => {
      if (!leaderOnly || context.leadership.isLeader()) background(what, work);
    }, ms);
    timer.unref();
    timers.push(timer);
  };
  every(AUDIT_FOLLOW_INTERVAL_MS, 'following the audit trail', () => service.followAudit());
  every(monitoring.checkIntervalMs, 'checking visas', () => service.checkVisas());
  // Each replica saves the use its own gateway saw.
  every(USAGE_SAVE_INTERVAL_MS, 'saving last use', () => service.saveUsage(), false);
  // Read on every run: clusters registered at run time are scanned too.
  const scanAll = () => Promise.all([...context.clusters.keys()].map((name) => service.scan(name)));
  if (monitoring.scanIntervalMs > 0) {
    every(monitoring.scanIntervalMs, 'scanning clusters', scanAll);
    // The baseline scan runs in the background so start-up does not wait for large clusters.
    const first = setTimeout(() => {
      if (context.leadership.isLeader()) background('scanning clusters', scanAll);
    }, 1000);
    first.unref();
    timers.push(first);
  }
  const kick = () => {
    if (context.leadership.isLeader()) background('following the audit trail', () => service.followAudit());
  };
  await service.startAuditCursor();
  kick();
  events.on('visas-changed', () => {
    service.visasChanged();
    kick();
  });
  events.on('visas-ended', kick);
  events.on('person-deprovisioned', kick);
  events.on('gateway-request', (request) => {
    usage.recordUse(request.personId, request.visaId, request.at);
    metrics.gatewayRequests.inc({ cluster: request.cluster, code: String(request.status) });
  });
  events.on('gateway-refusal', (refusal) =>
    metrics.gatewayRequests.inc({ cluster: refusal.cluster, code: String(refusal.status) }),
  );
  events.on('stream-cut', (cut) => metrics.streamCuts.inc({ cluster: cut.cluster, reason: cut.reason }));
  events.on('reconcile-pass', (pass) =>
    metrics.reconcilePasses.inc({ cluster: pass.cluster, kind: pass.kind, outcome: pass.error ? 'failed' : 'ok' }),
  );
  events.on('audit-verification-failed', (failure) => alerts.publish(auditFailureAlert(failure)));

  // ——— kube-apiserver audit logs ———
  const tails: Tail[] = [];
  /** Each followed log's ingestion chain, as it stands when asked. */
  const ingesting: (() => Promise<void>)[] = [];
  for (const { cluster, file } of monitoring.auditLogs) {
    const positionKey = `monitor.audit-log.${cluster}`;
    const saved = await store.getSetting(positionKey);
    const start =
      typeof saved === 'object' &&
      saved !== null &&
      !Array.isArray(saved) &&
      typeof saved['inode'] === 'number' &&
      typeof saved['offset'] === 'number' &&
      typeof saved['head'] === 'string' &&
      saved['file'] === file
        ? { inode: saved['inode'], offset: saved['offset'], head: saved['head'] }
        : undefined;
    let pending: Promise<void> = Promise.resolve();
    let savedPosition: TailPosition | undefined;
    const tail = tailFile({
      file,
      ...(start === undefined ? {} : { start }),
      onLines(lines) {
        const uses = lines.map(parseAuditLine).filter((use): use is AuditUse => use !== undefined);
        // Ingestion reads the store for attribution: chained so batches stay in order.
        pending = pending
          .then(() => service.ingestAuditUses(cluster, uses))
          .catch((error: unknown) => log(`reading ${file}: ${error instanceof Error ? error.message : String(error)}`));
      },
      onError: (error) => log(`audit log of cluster '${cluster}': ${error.message}`),
    });
    tails.push(tail);
    ingesting.push(() => pending);
    every(USAGE_SAVE_INTERVAL_MS, `saving the audit log position of cluster '${cluster}'`, async () => {
      await pending;
      const position = await tail.position();
      if (
        position === undefined ||
        (savedPosition?.inode === position.inode && savedPosition.offset === position.offset)
      ) {
        return;
      }
      await store.transaction((tx) => tx.putSetting(positionKey, { file, ...position }, context.now()));
      savedPosition = position;
    });
  }

  // ——— Routes ———
  const { route } = context;
  const clusterParam = {
    type: 'object',
    required: ['cluster'],
    properties: { cluster: { type: 'string', maxLength: 63 } },
  };
  const text = (maxLength: number) => ({ type: 'string', minLength: 1, maxLength });

  route({
    method: 'GET',
    url: '/metrics',
    summary: 'Prometheus metrics (the bearer token configured in monitoring.metrics, when set)',
    auth: 'token',
    handler: async (request, reply) => {
      if (
        monitoring.metricsToken !== undefined &&
        !bearerMatches(request.headers.authorization, monitoring.metricsToken)
      ) {
        throw new Unauthenticated('GET /metrics needs the bearer token configured in monitoring.metrics');
      }
      reply.type(metrics.contentType);
      return metrics.text();
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/monitoring/scans/:cluster',
    summary: 'Scan a cluster now (exposure; with a filter or matrix=true, who can do what)',
    auth: 'auditor',
    refusal: 'see exposure scans and usage',
    params: clusterParam,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        matrix: { type: 'string', enum: ['true', 'false'] },
        subject: text(320),
        namespace: text(63),
        verb: text(63),
        resource: text(253),
      },
    },
    handler: async (request) => {
      const { cluster } = request.params as { cluster: string };
      const query = request.query as Record<string, string | undefined>;
      const filter = {
        ...(query['subject'] ? { subject: query['subject'] } : {}),
        ...(query['namespace'] ? { namespace: query['namespace'] } : {}),
        ...(query['verb'] ? { verb: query['verb'] } : {}),
        ...(query['resource'] ? { resource: query['resource'] } : {}),
      };
      const wantMatrix = query['matrix'] === 'true' || Object.keys(filter).length > 0;
      return service.scan(cluster, wantMatrix ? { matrix: filter } : {});
    },
  });
  route({
    method: 'GET',
    url: '/api/v1/monitoring/scans/:cluster',
    summary: "A cluster's latest stored scan",
    auth: 'auditor',
    refusal: 'see exposure scans and usage',
    params: clusterParam,
    handler: async (request, reply) => {
      const { cluster } = request.params as { cluster: string };
      const latest = await service.latestScan(cluster);
      if (latest === undefined) {
        return reply
          .code(404)
          .type('application/problem+json')
          .send({
            type: 'https://kubevisa.dev/errors/ERR_NOT_FOUND',
            title: 'Not Found',
            status: 404,
            code: 'ERR_NOT_FOUND',
            detail: `cluster '${cluster}' has not been scanned yet: run 'kubevisa scan cluster --cluster ${cluster}'`,
          });
      }
      return latest;
    },
  });
  route({
    method: 'GET',
    url: '/api/v1/monitoring/usage',
    summary: 'Last use of every granting visa, stale ones marked',
    auth: 'auditor',
    refusal: 'see exposure scans and usage',
    handler: async () => {
      return service.usageReport();
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/monitoring/audit-events/:cluster',
    summary: "kube-apiserver's audit webhook backend (the token configured in monitoring.auditWebhook)",
    auth: 'token',
    bodyLimit: AUDIT_WEBHOOK_BODY_LIMIT,
    params: clusterParam,
    handler: async (request, reply) => {
      const { cluster } = request.params as { cluster: string };
      const token = monitoring.auditWebhookTokens.get(cluster);
      // Unknown cluster and wrong token answer the same, so the route does not reveal which clusters exist.
      if (token === undefined || !bearerMatches(request.headers.authorization, token)) {
        throw new Unauthenticated('the audit webhook needs the bearer token configured in monitoring.auditWebhook');
      }
      await service.ingestAuditUses(cluster, parseAuditPayload(request.body));
      reply.code(204);
      return undefined;
    },
  });

  context.onStop(async () => {
    stopping = true;
    for (const timer of timers) clearInterval(timer);
    for (const tail of tails) await tail.stop();
    await Promise.allSettled([...running, ...ingesting.map((chain) => chain())]);
    await alerts.stop();
    await service.saveUsage();
  });
  return { service, usage, alerts, metrics };
}

/** What monitoring hands back to the composition root (tests reach the monitor through it). */
export interface MonitoringHandle {
  service: MonitorService;
  usage: UsageTracker;
  alerts: AlertDispatcher;
  metrics: MonitorMetrics;
}

/** Constant-time check of `Authorization: Bearer <expected>` (hashes first so lengths never leak). */
function bearerMatches(header: string | undefined, expected: string): boolean {
  const match = typeof header === 'string' ? /^Bearer (\S+)$/.exec(header) : null;
  const given = createHash('sha256')
    .update(match?.[1] ?? '')
    .digest();
  const wanted = createHash('sha256').update(expected).digest();
  return match !== null && timingSafeEqual(given, wanted);
}
