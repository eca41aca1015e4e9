// Monitoring revoking stale access on the real server goes through the same revoke as a person: the visa and its
// approved extension end together, in one transaction, each audited as done by system:monitoring. kube-apiserver's
// audit webhook backend posts its real events to kubevisa's audit webhook.
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
  env = await startKubevisaEnv({ autoApproval: false, tls: true, auditWebhookToken: AUDIT_WEBHOOK_TOKEN });
  // Long enough to request and approve an extension before the visa counts as stale, short enough for a test.
  env.config.extensions['monitoring'] = {
    staleAfter: '8s',
    checkInterval: '1s',
    scanInterval: 0,
    revokeStale: true,
    auditWebhook: [{ cluster: CLUSTER, token: AUDIT_WEBHOOK_TOKEN }],
  };
  await env.kOk(['create', 'namespace', 'stale-ns']);
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
