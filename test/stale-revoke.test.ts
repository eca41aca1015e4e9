// Monitoring revoking stale access on the real server goes through the same revoke as a person: the visa and its
// approved extension end together, in one transaction, each audited as done by system:monitoring. What counts as
// use comes from kube-apiserver itself: its audit webhook backend posts real events to kubevisa (the only usage
// source configured here), and a visa used directly, out of the gateway's sight, is kept.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';

let env: KubevisaEnv;
let admin: string;
let approver: string;
let cora: string;
const AUDIT_WEBHOOK_TOKEN = 'stale-audit-webhook-token';

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

before(async () => {
  env = await startKubevisaEnv({ autoApproval: false, auditWebhookToken: AUDIT_WEBHOOK_TOKEN });
  // Long enough to request and approve an extension before the visa counts as stale, short enough for a test.
  env.config.extensions['monitoring'] = {
    staleAfter: '8s',
    checkInterval: '1s',
    scanInterval: 0,
    revokeStale: true,
    auditWebhook: [{ cluster: CLUSTER, token: AUDIT_WEBHOOK_TOKEN }],
  };
  for (const ns of ['stale-ns', 'stale-used', 'stale-idle']) await env.kOk(['create', 'namespace', ns]);
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = (await loginAs(env.serverUrl, people.cora)).token;
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'stale',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(10),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['stale-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
});
after(async () => {
  await env?.stop();
});

test('revoking a stale visa also ends its approved extension, which would otherwise start at the old deadline', async () => {
  const requested = await call('POST', '/api/v1/visas', cora, {
    profile: 'viewer',
    cluster: CLUSTER,
    namespaces: ['stale-ns'],
    duration: '1h',
    reason: 'JIRA-9',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const visaId = String(requested.body.id);
  assert.equal((await call('POST', `/api/v1/visas/${visaId}/approve`, approver, {})).status, 200);
  const extension = await call('POST', `/api/v1/visas/${visaId}/extend`, cora, { duration: '1h', reason: 'JIRA-9b' });
  assert.equal(extension.status, 201, JSON.stringify(extension.body));
  const extensionId = String(extension.body.id);
  const approved = await call('POST', `/api/v1/visas/${extensionId}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  assert.equal(approved.body.state, 'approved', 'the extension waits for its parent to end');

  await eventually('monitoring revoked the unused visa', 30_000, async () => {
    return (await call('GET', `/api/v1/visas/${visaId}`, admin)).body.state === 'revoked';
  });
  const parent = await call('GET', `/api/v1/visas/${visaId}`, admin);
  assert.equal(parent.body.endedBy, 'system:monitoring');
  const after = await call('GET', `/api/v1/visas/${extensionId}`, admin);
  assert.equal(after.body.state, 'revoked', JSON.stringify(after.body));
  assert.equal(after.body.endedBy, 'system:monitoring');
  assert.match(String(after.body.endReason), /the visa it extends was revoked: unused for/);

  const revocations = await env.server!.store.listAudit({ action: 'visa.revoked' });
  const byVisa = new Map(revocations.map((event) => [event.visaId, event]));
  assert.equal(byVisa.get(visaId)?.actor, 'system:monitoring');
  assert.equal(byVisa.get(extensionId)?.actor, 'system:monitoring');
  assert.equal(byVisa.get(extensionId)?.details['extends'], visaId);
  // One transaction: both events were committed together, one right after the other in the chain.
  assert.equal(byVisa.get(extensionId)!.seq, byVisa.get(visaId)!.seq + 1);
});

test('use seen only through kube-apiserver’s audit webhook keeps a visa; the unused one beside it is revoked as stale', async () => {
  const grant = async (namespace: string) => {
    const requested = await call('POST', '/api/v1/visas', cora, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: [namespace],
      duration: '1h',
      reason: 'JIRA-11',
    });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    const id = String(requested.body.id);
    assert.equal((await call('POST', `/api/v1/visas/${id}/approve`, approver, {})).status, 200);
    return id;
  };
  const used = await grant('stale-used');
  const idle = await grant('stale-idle');
  // A direct-mode token: requests go straight to kube-apiserver, so the gateway never sees them; only kube-apiserver's
  // audit events, posted to kubevisa's webhook, can tell monitoring that the visa is in use.
  const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora);
  assert.equal(credential.status, 200, JSON.stringify(credential.body));
  const kubeconfig = await env.cp.writeTokenKubeconfig(String(credential.body.token), 'cora-direct');
  const useOnce = async () => {
    const result = await env.k(['get', 'pods', '-n', 'stale-used'], kubeconfig);
    assert.equal(result.code, 0, result.stderr);
  };
  const stateOf = async (id: string) => (await call('GET', `/api/v1/visas/${id}`, admin)).body;
  // Both visas were approved together: the idle one goes stale first, the used one must never.
  await eventually('monitoring revoked the idle visa', 40_000, async () => {
    await useOnce();
    return (await stateOf(idle)).state === 'revoked';
  });
  assert.equal((await stateOf(idle)).endedBy, 'system:monitoring');
  // A few more check intervals of use: without the webhook's events the used visa would be revoked by now too.
  const until = Date.now() + 4000;
  while (Date.now() < until) {
    await useOnce();
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const kept = await stateOf(used);
  assert.equal(kept.state, 'active', JSON.stringify(kept));
  const usage = await call('GET', '/api/v1/monitoring/usage', admin);
  const entry = (usage.body['visas'] as { id: string; lastUsedAt: string | null; stale: boolean }[]).find(
    (v) => v.id === used,
  );
  assert.ok(entry?.lastUsedAt, JSON.stringify(usage.body));
  assert.ok(Date.now() - Date.parse(entry.lastUsedAt) < 8000, `last use ${entry.lastUsedAt} is recent`);
  assert.equal(entry.stale, false);
  // The events came through the webhook (no audit log file is followed here), counted by /metrics.
  const metrics = await (await fetch(`${env.serverUrl}/metrics`)).text();
  const ingested = /^kubevisa_usage_audit_events_total\{cluster="test"\} (\d+)$/m.exec(metrics);
  assert.ok(ingested && Number(ingested[1]) > 0, 'audit events ingested from the webhook');
});

test('the audit webhook refuses a wrong token and a kubevisa login, and changes nothing', async () => {
  const post = (token: string) =>
    api(env.serverUrl, 'POST', `/api/v1/monitoring/audit-events/${CLUSTER}`, {
      token,
      body: { kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [] },
    });
  assert.equal((await post('wrong-token')).status, 401);
  assert.equal((await post(admin)).status, 401, 'a kubevisa login is not the audit webhook’s token');
  assert.equal((await post(AUDIT_WEBHOOK_TOKEN)).status, 204);
});
