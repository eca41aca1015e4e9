// The monitor's bookkeeping with the real SQLite store and a clock the test moves: staleness (and revoking), expiry
// notices, and following the audit trail across a restart. Alerts are collected by a sink that keeps them.
import { after, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { anEngagement, aPolicy, DAY, HOUR, NOW } from '../domain/testing/fixtures.ts';
import type { Visa } from '../domain/model.ts';
import { AppEvents } from '../app/events.ts';
import { VisaService } from '../app/visas.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { AlertDispatcher } from './alert-delivery.ts';
import { DEFAULT_RETRY, type Alert } from './alerts.ts';
import type { MonitoringConfig } from './config.ts';
import { MonitorMetrics } from './metrics.ts';
import { revokeAsMonitor } from './revoke.ts';
import { MonitorService } from './service.ts';
import { UsageTracker } from './usage.ts';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

let store: Store;
let clock: number;
let visa: Visa;
const EMAIL = 'carol@vendor.example';

beforeEach(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-monitor-service-'));
  dirs.push(dir);
  store = await openSqliteStore({ path: join(dir, 'kubevisa.db') });
  clock = NOW;
  visa = await store.transaction(async (tx) => {
    const person = await tx.upsertPersonFromLogin({
      issuer: 'https://idp.example',
      subject: 'carol',
      email: EMAIL,
      displayName: 'Carol',
      groups: [],
      now: NOW - DAY,
    });
    const engagement = await tx.insertEngagement(anEngagement({ contractors: [EMAIL] }));
    return tx.insertVisa({
      id: 'v_stale',
      engagementId: engagement.id,
      personId: person.id,
      personEmail: EMAIL,
      cluster: 'prod',
      namespaces: ['payments'],
      profile: 'viewer',
      reason: 'JIRA-1',
      requestedAt: NOW,
      requestedSeconds: 3 * 86_400,
      notBefore: NOW,
      notAfter: NOW + 3 * DAY,
      state: 'active',
      approvals: [],
      requiredApprovals: 1,
    });
  });
});

function monitor(options: { revokeStale?: boolean; alerts: Alert[]; events?: AppEvents; usage?: UsageTracker }) {
  const events = options.events ?? new AppEvents();
  const visas = new VisaService({ store, policy: aPolicy(), clusterNames: () => [], events, now: () => clock });
  const monitoring: MonitoringConfig = {
    staleAfterMs: DAY,
    revokeStale: options.revokeStale ?? false,
    checkIntervalMs: 60_000,
    scanIntervalMs: 0,
    contractorDomains: [],
    auditLogs: [],
    auditWebhookTokens: new Map(),
  };
  const dispatcher = new AlertDispatcher({
    sinks: [
      {
        name: 'keep',
        async send(alert) {
          options.alerts.push(alert);
        },
      },
    ],
  });
  const service = new MonitorService({
    store,
    clusters: new Map(),
    usage: options.usage ?? new UsageTracker(),
    alerts: dispatcher,
    metrics: new MonitorMetrics({
      visaCounts: async () => ({ activeByCluster: new Map(), pending: 0 }),
      reconcileStatus: () => [],
    }),
    monitoring,
    alertsConfig: { sinks: [], retry: DEFAULT_RETRY, attemptTimeoutMs: 1000, expiryNoticeMs: HOUR },
    revoke: async (visaId, reason) => {
      await revokeAsMonitor(visas, visaId, reason);
    },
    log: (message) => assert.fail(`unexpected log: ${message}`),
    now: () => clock,
  });
  return { service, dispatcher };
}

describe('stale visas', () => {
  test('are alerted once per idle period; a use starts a new one', async () => {
    const alerts: Alert[] = [];
    const usage = new UsageTracker();
    const { service, dispatcher } = monitor({ alerts, usage });
    clock = NOW + DAY / 2;
    await service.checkVisas();
    clock = NOW + DAY + HOUR;
    await service.checkVisas();
    await service.checkVisas();
    await dispatcher.idle(2000);
    const stale = () => alerts.filter((a) => a.event === 'stale-access' && a.visaId === 'v_stale');
    assert.equal(stale().length, 1);
    assert.match(stale()[0]!.text, /never been used/);
    usage.recordUse(visa.personId, visa.id, NOW + DAY + 2 * HOUR);
    clock = NOW + 2 * DAY + 3 * HOUR;
    await service.checkVisas();
    await dispatcher.idle(2000);
    assert.equal(stale().length, 2);
    assert.match(stale()[1]!.text, /not been used since/);
    // The person-level alert comes with the first idle period too.
    assert.ok(alerts.some((a) => a.id.startsWith(`stale-access:person:${visa.personId}:`)));
    await dispatcher.stop();
  });

  test('are revoked as system:monitoring when configured, and the reconciler and gateway are told', async () => {
    const alerts: Alert[] = [];
    const events = new AppEvents();
    const told: string[] = [];
    events.on('clusters-changed', (clusters) => told.push(`clusters-changed ${clusters.join(',')}`));
    events.on('visas-ended', (visas, reason) => told.push(`visas-ended ${visas[0]?.id} ${reason}`));
    const { service, dispatcher } = monitor({ alerts, events, revokeStale: true });
    clock = NOW + DAY + HOUR;
    await service.checkVisas();
    await dispatcher.idle(2000);
    const stored = await store.getVisa('v_stale');
    assert.equal(stored?.state, 'revoked');
    assert.equal(stored.endedBy, 'system:monitoring');
    const [audit] = await store.listAudit({ visaId: 'v_stale', action: 'visa.revoked' });
    assert.equal(audit?.actor, 'system:monitoring');
    assert.match(audit.reason ?? '', /unused for 1\.0 days \(monitoring\.revokeStale\)/);
    assert.deepEqual(told, [
      'clusters-changed prod',
      'visas-ended v_stale unused for 1.0 days (monitoring.revokeStale)',
    ]);
    const alert = alerts.find((a) => a.event === 'stale-access' && a.visaId === 'v_stale');
    assert.equal(alert?.details['revoked'], true);
    await dispatcher.stop();
  });
});

describe('expiry notices', () => {
  test('are sent once per visa, within the lead time, to the holder and the sponsor', async () => {
    const alerts: Alert[] = [];
    const { service, dispatcher } = monitor({ alerts });
    clock = visa.notAfter - 2 * HOUR;
    await service.checkVisas();
    clock = visa.notAfter - 30 * 60_000;
    await service.checkVisas();
    await service.checkVisas();
    await dispatcher.idle(2000);
    const notices = alerts.filter((a) => a.event === 'visa-expiring');
    assert.equal(notices.length, 1);
    assert.deepEqual(notices[0]?.recipients, [EMAIL, anEngagement().sponsor]);
    await dispatcher.stop();
  });
});

describe('following the audit trail', () => {
  const append = (action: string) =>
    store.transaction((tx) =>
      tx.appendAudit({
        at: clock,
        actor: 'ann@corp.example',
        action,
        visaId: 'v_stale',
        cluster: 'prod',
        outcome: 'ok',
      }),
    );

  test('starts at the head (history is not re-announced), alerts each new event once, and resumes after a restart', async () => {
    await append('visa.requested');
    const alerts: Alert[] = [];
    const first = monitor({ alerts });
    await first.service.followAudit();
    await append('visa.approved');
    await first.service.followAudit();
    await first.service.followAudit();
    await first.dispatcher.idle(2000);
    assert.deepEqual(
      alerts.map((a) => a.event),
      ['visa-approved'],
    );
    await first.dispatcher.stop();
    // A new process: the cursor is in the store.
    await append('visa.revoked');
    const second = monitor({ alerts });
    await second.service.followAudit();
    await second.dispatcher.idle(2000);
    assert.deepEqual(
      alerts.map((a) => a.event),
      ['visa-approved', 'visa-revoked'],
    );
    await second.dispatcher.stop();
  });
});
