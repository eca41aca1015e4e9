// Protected namespaces against the real server and control plane: the cluster's system namespaces, kubevisa's own
// and an admin's additions are refused at every door, and the reconciler never writes a binding there, even for a
// visa row that names one (written before an upgrade, or by hand into the database).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';

let env: KubevisaEnv;
let admin: string;
let cora: { token: string; personId: string };
let engagementId: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

const engagementBody = (name: string, namespacePatterns: string[]) => ({
  name,
  vendor: 'Acme',
  contractors: [people.cora.email],
  sponsor: people.sam.email,
  endsAt: inDays(10),
  ceiling: { clusters: [CLUSTER], namespacePatterns, profiles: ['viewer'] },
  maxVisaDuration: '8h',
});

before(async () => {
  env = await startKubevisaEnv({ autoApproval: false, extraConfig: { protectedNamespaces: ['vault', 'secrets-*'] } });
  for (const ns of ['kubeapps', 'vault', 'secrets-db']) await env.kOk(['create', 'namespace', ns]);
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await call(
    'POST',
    '/api/v1/engagements',
    admin,
    engagementBody('wide', ['kube*', 'vault*', 'secrets-*']),
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  engagementId = String(created.body.id);
  // Accepted, but the answer says what the patterns will never grant.
  const warnings = (created.body.warnings ?? []) as string[];
  assert.match(
    warnings.join('\n'),
    /'kube\*' also matches protected kube-system, kube-public, kube-node-lease, kubevisa-visas, kubevisa-system/,
  );
  assert.match(warnings.join('\n'), /'vault\*' also matches protected vault/);
});
after(async () => {
  await env?.stop();
});

describe('engagements', () => {
  test('an engagement whose ceiling names kubevisa-visas is refused, and nothing is created', async () => {
    const refused = await call(
      'POST',
      '/api/v1/engagements',
      admin,
      engagementBody('own-ns', ['team-a', 'kubevisa-visas']),
    );
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'ERR_PROTECTED_NAMESPACE');
    assert.match(String(refused.body.detail), /'kubevisa-visas' is a protected namespace and can never be granted/);
    const names = ((await call('GET', '/api/v1/engagements', admin)).body.items ?? []).map((e) => e.name);
    assert.ok(!names.includes('own-ns'), `no engagement was created: ${names.join(', ')}`);
  });
});

describe('visa requests', () => {
  test('a request for kube-system is refused although the ceiling kube* matches it, saying why', async () => {
    const refused = await call('POST', '/api/v1/visas', cora.token, {
      engagement: engagementId,
      cluster: CLUSTER,
      namespaces: ['kube-system'],
      profile: 'viewer',
      duration: '1h',
      reason: 'JIRA-5',
    });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'ERR_PROTECTED_NAMESPACE');
    assert.match(
      String(refused.body.detail),
      /this visa request is refused: namespace 'kube-system' is protected\. kubevisa never grants the cluster's system namespaces/,
    );
    const allowed = await call('POST', '/api/v1/visas', cora.token, {
      engagement: engagementId,
      cluster: CLUSTER,
      namespaces: ['kubeapps'],
      profile: 'viewer',
      duration: '1h',
      reason: 'JIRA-5',
    });
    assert.equal(allowed.status, 201, 'an ordinary namespace under the same pattern is fine');
  });

  test('namespaces an admin protected in the configuration are refused too', async () => {
    for (const namespace of ['vault', 'secrets-db']) {
      const refused = await call('POST', '/api/v1/visas', cora.token, {
        engagement: engagementId,
        cluster: CLUSTER,
        namespaces: [namespace],
        profile: 'viewer',
        duration: '1h',
        reason: 'JIRA-5',
      });
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.match(String(refused.body.detail), /protected by the configuration \(vault, secrets-\*\)/);
    }
  });
});

describe('the reconciler', () => {
  test('a visa row forced into the store naming kube-system never yields a RoleBinding there', async () => {
    const now = Date.now();
    const forced = await env.server!.store.transaction((tx) =>
      tx.insertVisa({
        id: 'v_forced',
        engagementId,
        personId: cora.personId,
        personEmail: people.cora.email,
        cluster: CLUSTER,
        namespaces: ['kubeapps', 'kube-system', 'vault'],
        profile: 'viewer',
        reason: 'written by hand',
        requestedAt: now,
        requestedSeconds: 3600,
        notBefore: now,
        notAfter: now + 3600_000,
        state: 'approved',
        approvals: [{ by: people.sam.email, at: now }],
        requiredApprovals: 1,
        decidedAt: now,
        decidedBy: people.sam.email,
      }),
    );
    const report = await env.server!.reconciler.reconcileNow(CLUSTER);
    assert.equal(report.error, undefined, report.error);
    // The same pass wrote the binding in the ordinary namespace, so it did reconcile this visa.
    await eventually('the binding in kubeapps exists', 10_000, async () => {
      return (await env.k(['get', 'rolebinding', `kubevisa-${forced.id}`, '-n', 'kubeapps'])).code === 0;
    });
    for (const namespace of ['kube-system', 'vault']) {
      const bindings = await env.kOk([
        'get',
        'rolebindings',
        '-n',
        namespace,
        '-l',
        'app.kubernetes.io/managed-by=kubevisa',
        '-o',
        'jsonpath={.items[*].metadata.name}',
      ]);
      assert.equal(bindings.trim(), '', `no kubevisa RoleBinding in ${namespace}`);
    }
    const refused = await env.server!.store.listAudit({ action: 'cluster.protected-namespace-refused' });
    assert.deepEqual(refused.map((event) => event.namespace).sort(), ['kube-system', 'vault']);
    assert.ok(refused.every((event) => event.visaId === forced.id && event.outcome === 'refused'));

    // The gateway reads the same row the same way: through to kubeapps, never to kube-system or vault.
    env.server!.context.events.emit('visas-changed');
    const through = (namespace: string) =>
      api(env.serverUrl, 'GET', `/clusters/${CLUSTER}/api/v1/namespaces/${namespace}/configmaps?limit=1`, {
        token: cora.token,
      });
    await eventually('the gateway admits the forced visa in kubeapps', 15_000, async () => {
      return (await through('kubeapps')).status === 200;
    });
    for (const namespace of ['kube-system', 'vault']) {
      const answer = await through(namespace);
      assert.equal(answer.status, 403, JSON.stringify(answer.body));
      assert.match(String(answer.body.message), new RegExp(`do not cover namespace '${namespace}'`));
    }
  });
});
