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

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

before(async () => {
  env = await startKubevisaEnv({ auditWebhookToken: AUDIT_WEBHOOK_TOKEN });
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
  await eventually(`visa for ${namespace} active`, 20_000, async () => {
    return (await call('GET', `/api/v1/visas/${id}`, cora)).body.state === 'active';
  });
  return id;
}

async function metric(name: string): Promise<number> {
  const response = await fetch(`${env.serverUrl}/metrics`);
  const text = await response.text();
  const values = text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
  return values.reduce((sum, value) => sum + value, 0);
}

test("kube-apiserver's audit webhook reports Cora's use: her used visa stays, the unused one is revoked as stale", async () => {
  const used = await activeVisa('hook-used');
  const unused = await activeVisa('hook-unused');
  const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora);
  assert.equal(credential.status, 200, JSON.stringify(credential.body));
  const kubeconfig = await env.cp.writeTokenKubeconfig(String(credential.body.token), 'cora-direct');

  // Use the first visa every 3 s until the unused one has been revoked (bounded: at most 3 × the stale time).
  const deadline = Date.now() + 3 * STALE_AFTER_S * 1000;
  let uses = 0;
  while (Date.now() < deadline) {
    const read = await env.k(['get', 'pods', '-n', 'hook-used'], kubeconfig);
    assert.equal(read.code, 0, `Cora's direct token reads pods in hook-used: ${read.stderr}`);
    uses += 1;
    if ((await call('GET', `/api/v1/visas/${unused}`, admin)).body.state === 'revoked') break;
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }

  const revoked = await call('GET', `/api/v1/visas/${unused}`, admin);
  assert.equal(revoked.body.state, 'revoked', `the unused visa was revoked as stale: ${JSON.stringify(revoked.body)}`);
  assert.equal(revoked.body.endedBy, 'system:monitoring');
  assert.match(String(revoked.body.endReason), /unused for/);

  const kept = await call('GET', `/api/v1/visas/${used}`, admin);
  assert.equal(kept.body.state, 'active', `the used visa is kept: ${JSON.stringify(kept.body)}`);
  assert.ok(uses * 3 >= STALE_AFTER_S, `Cora used it for longer than the stale time (${uses} reads)`);
  assert.ok(
    (await metric('kubevisa_usage_audit_events_total')) > 0,
    'the uses came from kube-apiserver through the webhook',
  );
  const usage = await call('GET', '/api/v1/monitoring/usage', admin);
  assert.equal(usage.status, 200, JSON.stringify(usage.body));
  assert.match(JSON.stringify(usage.body), new RegExp(used), 'the usage report knows the used visa');
});
