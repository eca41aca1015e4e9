// One kubevisa server managing two real clusters (two control planes, each with kubevisa installed with its own
// credential): visas bind only in their own cluster, the gateway routes /clusters/<name> to the right one, visas
// expire and people are offboarded on both, and one cluster being down blocks nothing on the other. "Blocks
// nothing" is shown by completion, not by timing: each step on the live cluster must finish while the other
// cluster's kube-apiserver is stopped, and the test waits for it with a bound far above its usual duration.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { serviceAccountName } from '../src/domain/names.ts';
import type { Receipt } from '../src/identity/receipt.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectl } from './support/kubectl.ts';

const EAST = 'east';
const BOTH = [CLUSTER, EAST];

let env: KubevisaEnv;
let admin: string;
let approver: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
/** kubectl as the cluster admin of one cluster. */
const adminK = (cluster: string, args: string[]) => {
  const plane = env.clusters.get(cluster)!;
  return kubectl(plane.binaries.kubectl, args, { kubeconfig: plane.adminKubeconfig, timeoutMs: 15_000 });
};
/** kubectl through the gateway with a person's kubevisa token. */
const gatewayK = (kubeconfig: string, args: string[]) =>
  kubectl(env.cp.binaries.kubectl, ['--request-timeout=10s', ...args], { kubeconfig, timeoutMs: 20_000 });
const bindingExists = async (cluster: string, namespace: string, visaId: string) =>
  (await adminK(cluster, ['get', 'rolebinding', `kubevisa-${visaId}`, '-n', namespace])).code === 0;

async function grant(token: string, cluster: string, namespace: string, duration = '1h'): Promise<string> {
  const requested = await call('POST', '/api/v1/visas', token, {
    profile: 'viewer',
    cluster,
    namespaces: [namespace],
    duration,
    reason: 'multi-cluster test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const id = String(requested.body.id);
  const approved = await call('POST', `/api/v1/visas/${id}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  return id;
}

before(async () => {
  env = await startKubevisaEnv({
    tls: true,
    autoApproval: false,
    extraClusters: [EAST],
    extraConfig: { identity: { offboarding: { retryInterval: '1s', maxRetryInterval: '2s' } } },
  });
  for (const cluster of BOTH) {
    for (const ns of ['mc-app', 'mc-only', 'mc-expire', 'mc-down']) {
      const created = await adminK(cluster, ['create', 'namespace', ns]);
      assert.equal(created.code, 0, created.stderr);
    }
    const marker = await adminK(cluster, [
      'create',
      'configmap',
      'where',
      '-n',
      'mc-app',
      `--from-literal=cluster=${cluster}`,
    ]);
    assert.equal(marker.code, 0, marker.stderr);
  }
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'two-clusters',
    vendor: 'Acme',
    contractors: [people.cora.email, people.carl.email],
    sponsor: people.sam.email,
    endsAt: inDays(10),
    ceiling: { clusters: BOTH, namespacePatterns: ['mc-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
});

after(async () => {
  await env?.stop();
});

describe('two clusters, both up', () => {
  test('a visa binds only in its own cluster, and the gateway routes each cluster name to its own kube-apiserver', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    const onTest = await grant(cora.token, CLUSTER, 'mc-app');
    const onEast = await grant(cora.token, EAST, 'mc-app');
    const onlyTest = await grant(cora.token, CLUSTER, 'mc-only');
    await eventually('both bindings', 20_000, async () =>
      (
        await Promise.all([
          bindingExists(CLUSTER, 'mc-app', onTest),
          bindingExists(EAST, 'mc-app', onEast),
          bindingExists(CLUSTER, 'mc-only', onlyTest),
        ])
      ).every(Boolean),
    );
    assert.equal(await bindingExists(EAST, 'mc-app', onTest), false, "the test visa's binding is not in east");
    assert.equal(await bindingExists(CLUSTER, 'mc-app', onEast), false, "the east visa's binding is not in test");
    assert.equal(await bindingExists(EAST, 'mc-only', onlyTest), false);

    for (const cluster of BOTH) {
      const kubeconfig = await env.writeGatewayKubeconfig(cora.token, `cora-${cluster}`, cluster);
      const read = await gatewayK(kubeconfig, [
        'get',
        'configmap',
        'where',
        '-n',
        'mc-app',
        '-o',
        'jsonpath={.data.cluster}',
      ]);
      assert.equal(read.code, 0, read.stderr);
      assert.equal(read.stdout, cluster, `/clusters/${cluster} reached ${read.stdout}`);
    }
    // A visa for mc-only on test grants nothing in east's mc-only.
    const eastKubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora-east-only', EAST);
    const refused = await gatewayK(eastKubeconfig, ['get', 'pods', '-n', 'mc-only']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /do not cover namespace 'mc-only'/);
  });

  test('visas on both clusters expire: each binding is removed and the gateway refuses', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    const ids = new Map<string, string>();
    for (const cluster of BOTH) ids.set(cluster, await grant(cora.token, cluster, 'mc-expire', '8s'));
    const kubeconfigs = new Map<string, string>();
    for (const cluster of BOTH) {
      kubeconfigs.set(cluster, await env.writeGatewayKubeconfig(cora.token, `cora-expire-${cluster}`, cluster));
    }
    await eventually('both bindings', 20_000, async () =>
      (await Promise.all(BOTH.map((c) => bindingExists(c, 'mc-expire', ids.get(c)!)))).every(Boolean),
    );
    await eventually('both bindings removed at expiry', 40_000, async () =>
      (await Promise.all(BOTH.map((c) => bindingExists(c, 'mc-expire', ids.get(c)!)))).every((exists) => !exists),
    );
    for (const cluster of BOTH) {
      const visa = await call('GET', `/api/v1/visas/${ids.get(cluster)!}`, admin);
      assert.equal(visa.body.state, 'expired', JSON.stringify(visa.body));
      const refused = await gatewayK(kubeconfigs.get(cluster)!, ['get', 'pods', '-n', 'mc-expire']);
      assert.notEqual(refused.code, 0, `${cluster}: the gateway refuses after expiry`);
    }
  });
});

describe('one cluster down', () => {
  test('with east stopped, visas, the gateway, expiry and revocation on test go on; east catches up when back', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    const east = env.clusters.get(EAST)!;
    await east.stopApiServer();
    try {
      const eastVisa = await grant(cora.token, EAST, 'mc-down');
      const testVisa = await grant(cora.token, CLUSTER, 'mc-down');
      const shortVisa = await grant(cora.token, CLUSTER, 'mc-expire', '8s');
      await eventually('the test bindings while east is down', 30_000, async () =>
        (
          await Promise.all([
            bindingExists(CLUSTER, 'mc-down', testVisa),
            bindingExists(CLUSTER, 'mc-expire', shortVisa),
          ])
        ).every(Boolean),
      );
      const testKubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora-down-test', CLUSTER);
      const read = await gatewayK(testKubeconfig, ['get', 'pods', '-n', 'mc-down']);
      assert.equal(read.code, 0, read.stderr);
      const eastKubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora-down-east', EAST);
      const unreachable = await gatewayK(eastKubeconfig, ['get', 'pods', '-n', 'mc-down']);
      assert.notEqual(unreachable.code, 0, 'east is down');
      assert.match(unreachable.stderr, /unreachable|BadGateway|502|503/i, unreachable.stderr);

      // Expiry and revocation on test while east is still down.
      await eventually(
        'the short test visa removed at expiry',
        40_000,
        async () => !(await bindingExists(CLUSTER, 'mc-expire', shortVisa)),
      );
      const revoked = await call('POST', `/api/v1/visas/${testVisa}/revoke`, admin, { reason: 'east is down' });
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      await eventually(
        'the revoked test binding removed',
        20_000,
        async () => !(await bindingExists(CLUSTER, 'mc-down', testVisa)),
      );
      const afterRevoke = await gatewayK(testKubeconfig, ['get', 'pods', '-n', 'mc-down']);
      assert.notEqual(afterRevoke.code, 0, 'the gateway refuses the revoked visa');

      await east.startApiServer();
      await eventually('east binds the visa approved while it was down', 40_000, () =>
        bindingExists(EAST, 'mc-down', eastVisa),
      );
    } finally {
      await east.startApiServer();
    }
  });

  test('offboarding with east down proves every step on test at once; east is proven once it is back', async () => {
    const carl = await loginAs(env.serverUrl, people.carl);
    for (const cluster of BOTH) await grant(carl.token, cluster, 'mc-app');
    const sa = serviceAccountName(people.carl.email);
    await eventually('carl has a ServiceAccount in both clusters', 20_000, async () =>
      (await Promise.all(BOTH.map((c) => adminK(c, ['get', 'serviceaccount', sa, '-n', 'kubevisa-visas'])))).every(
        (r) => r.code === 0,
      ),
    );
    const east = env.clusters.get(EAST)!;
    await east.stopApiServer();
    try {
      const started = await call(
        'POST',
        `/api/v1/persons/${encodeURIComponent(people.carl.email)}/offboarding`,
        admin,
        {
          reason: 'contract ended',
          wait: false,
        },
      );
      assert.equal(started.status, 201, JSON.stringify(started.body));
      const id = String(started.body.id);
      const receipt = async () => (await call('GET', `/api/v1/offboardings/${id}`, admin)).body as unknown as Receipt;
      let partial: Receipt | undefined;
      await eventually('every step on test proven while east is down', 60_000, async () => {
        partial = await receipt();
        return partial.steps.filter((s) => s.cluster === CLUSTER).every((s) => s.status === 'proven');
      });
      assert.equal(partial!.status, 'unproven', partial!.summary);
      const open = partial!.steps.filter((s) => s.status !== 'proven');
      assert.ok(open.length > 0 && open.every((s) => s.cluster === EAST), JSON.stringify(open));
      // test's canary was minted before the commit: its token proof is kube-apiserver's own 401.
      const testToken = partial!.steps.find((s) => s.id === `cluster/${CLUSTER}/token`)!;
      assert.match(testToken.detail, /kube-apiserver answered 401 to a token it had accepted before the offboarding/);
      assert.notEqual((await adminK(CLUSTER, ['get', 'serviceaccount', sa, '-n', 'kubevisa-visas'])).code, 0);

      await east.startApiServer();
      let final: Receipt | undefined;
      await eventually('the receipt is proven once east is back', 90_000, async () => {
        final = await receipt();
        return final.status === 'proven';
      });
      for (const step of final!.steps) assert.equal(step.status, 'proven', `${step.id}: ${step.detail}`);
      assert.notEqual((await adminK(EAST, ['get', 'serviceaccount', sa, '-n', 'kubevisa-visas'])).code, 0);
    } finally {
      await east.startApiServer();
    }
  });
});
