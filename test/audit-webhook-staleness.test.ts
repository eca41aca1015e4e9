// Staleness driven by kube-apiserver's own audit webhook: the only source of use here is the real kube-apiserver
// posting its audit events to kubevisa (`monitoring.auditWebhook`), no audit log file and no gateway. Cora uses one
// visa through a direct token every few seconds and never uses the other: monitoring revokes the unused one as
// stale and keeps the one kube-apiserver reports her using.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';

const AUDIT_WEBHOOK_TOKEN = 'webhook-staleness-token';
/** Long enough that a use every few seconds keeps a visa fresh, short enough to wait out in a test. */
const STALE_AFTER_S = 25;

let env: KubevisaEnv;
let admin: string;
let cora: string;
let approver: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

before(async () => {
  // TLS as in production: kube-apiserver's webhook client sends its bearer token only over https (over plain http
  // every batch arrives without it and is refused).
  env = await startKubevisaEnv({ autoApproval: false, tls: true, auditWebhookToken: AUDIT_WEBHOOK_TOKEN });
  env.config.extensions['monitoring'] = {
    staleAfter: `${STALE_AFTER_S}s`,
    checkInterval: '1s',
    scanInterval: 0,
    revokeStale: true,
    auditWebhook: [{ cluster: CLUSTER, token: AUDIT_WEBHOOK_TOKEN }],
  };
  await env.kOk(['create', 'namespace', 'hook-used']);
  await env.kOk(['create', 'namespace', 'hook-unused']);
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  cora = (await loginAs(env.serverUrl, people.cora)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'hook',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(10),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['hook-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
});
after(async () => {
  await env?.stop();
});

async function activeVisa(namespace: string): Promise<string> {
  const requested = await call('POST', '/api/v1/visas', cora, {
    profile: 'viewer',
    cluster: CLUSTER,
    namespaces: [namespace],
    duration: '1h',
    reason: 'JIRA-11',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const id = String(requested.body.id);
  const approved = await call('POST', `/api/v1/visas/${id}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  await eventually(`visa for ${namespace} active`, 20_000, async () => {
    return (await call('GET', `/api/v1/visas/${id}`, cora)).body.state === 'active';
  });
  return id;
}

async function metric(name: string): Promise<number> {
  const text = String((await api(env.serverUrl, 'GET', '/metrics')).body.raw ?? '');
  const values = text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
  return values.reduce((sum, value) => sum + value, 0);
}

test("kube-apiserver's audit webhook reports Cora's use: her used visa stays, the unused one is revoked as stale", async () => {
  const used = await activeVisa('hook-used');
  const usedActiveAt = Date.now();
  const unused = await activeVisa('hook-unused');
  // As kubectl's exec plugin does: a fresh direct credential whenever kube-apiserver no longer takes the last one
  // (the reconciler makes Cora's ServiceAccount again when a binding is added while her tokens may live).
  let kubeconfig = '';
  // Ending the unused visa ends her direct tokens too, and the next credential request is told why (once).
  const unusedRevoked = async () => (await call('GET', `/api/v1/visas/${unused}`, admin)).body.state === 'revoked';
  const freshCredential = async (): Promise<boolean> => {
    const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora);
    if (credential.status === 403 && credential.body.visa === unused) return false;
    assert.equal(credential.status, 200, JSON.stringify(credential.body));
    kubeconfig = await env.cp.writeTokenKubeconfig(String(credential.body.token), 'cora-direct');
    return true;
  };
  assert.equal(await freshCredential(), true);

  // Use the first visa every 3 s until the unused one has been revoked (bounded: at most 3 × the stale time).
  const deadline = Date.now() + 3 * STALE_AFTER_S * 1000;
  let uses = 0;
  while (Date.now() < deadline) {
    if (await unusedRevoked()) break;
    let read = await env.k(['get', 'pods', '-n', 'hook-used'], kubeconfig);
    if (read.code !== 0 && /Unauthorized|must be logged in/.test(read.stderr)) {
      if (!(await freshCredential())) break;
      read = await env.k(['get', 'pods', '-n', 'hook-used'], kubeconfig);
    }
    assert.equal(read.code, 0, `Cora's direct token reads pods in hook-used: ${read.stderr}`);
    uses += 1;
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }

  const revoked = await call('GET', `/api/v1/visas/${unused}`, admin);
  assert.equal(revoked.body.state, 'revoked', `the unused visa was revoked as stale: ${JSON.stringify(revoked.body)}`);
  assert.equal(revoked.body.endedBy, 'system:monitoring');
  assert.match(String(revoked.body.endReason), /unused for/);

  const kept = await call('GET', `/api/v1/visas/${used}`, admin);
  const report = await call('GET', '/api/v1/monitoring/usage', admin);
  assert.equal(
    kept.body.state,
    'active',
    `the used visa is kept: ${JSON.stringify(kept.body)}; webhook events ${await metric('kubevisa_usage_audit_events_total')}; usage ${JSON.stringify(report.body)}`,
  );
  // Active longer than the stale time, it would be stale by now had kube-apiserver not reported its use.
  assert.ok(Date.now() - usedActiveAt > STALE_AFTER_S * 1000, 'the used visa outlived the stale time');
  assert.ok(uses >= 3, `Cora read pods through it (${uses} reads)`);
  assert.ok(
    (await metric('kubevisa_usage_audit_events_total')) > 0,
    'the uses came from kube-apiserver through the webhook',
  );
  const usage = await call('GET', '/api/v1/monitoring/usage', admin);
  assert.equal(usage.status, 200, JSON.stringify(usage.body));
  assert.match(JSON.stringify(usage.body), new RegExp(used), 'the usage report knows the used visa');
});
