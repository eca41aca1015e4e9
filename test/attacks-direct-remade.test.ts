// A direct token authenticates by the ServiceAccount's name, and kube-apiserver keeps a token it verified for 10 s.
// When a person's last visa ends their ServiceAccount is deleted; a gateway-only visa approved a moment later makes
// one of the same name again. Against the real server, control plane and kubectl: the direct token issued before
// never runs kubectl exec through the new visa's binding, which waits out the token cache.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serviceAccountName } from '../src/domain/names.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectl } from './support/kubectl.ts';

const NAMESPACE = 'dr-remade';
let env: KubevisaEnv;
let cora: { token: string; personId: string };

const call = (method: string, path: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token: cora.token, ...(body !== undefined ? { body } : {}) });

async function request(profile: string): Promise<string> {
  const requested = await call('POST', '/api/v1/visas', {
    profile,
    cluster: CLUSTER,
    namespaces: [NAMESPACE],
    duration: '1h',
    reason: 'remade ServiceAccount',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  return String(requested.body.id);
}

const bindingExists = async (visaId: string) =>
  (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', NAMESPACE])).code === 0;

before(async () => {
  env = await startKubevisaEnv({
    extraConfig: {
      policy: {
        requiredApprovals: 1,
        approverGroups: ['kubevisa-approvers'],
        // Approved on request: the holder chooses the instant the new binding is written.
        autoApproval: [
          {
            name: 'remade',
            profiles: ['viewer', 'debugger'],
            clusters: [CLUSTER],
            namespacePatterns: ['dr-*'],
            maxDuration: '4h',
          },
        ],
        maxVisaDuration: '7d',
      },
    },
  });
  await env.startInProcess();
  const admin = (await loginAs(env.serverUrl, people.sam)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await api(env.serverUrl, 'POST', '/api/v1/engagements', {
    token: admin,
    body: {
      name: 'remade',
      vendor: 'Acme',
      contractors: [people.cora.email],
      sponsor: people.sam.email,
      endsAt: inDays(3),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['dr-*'], profiles: ['viewer', 'debugger'] },
      maxVisaDuration: '8h',
    },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await env.kOk(['create', 'namespace', NAMESPACE]);
  await eventually(
    `default ServiceAccount in ${NAMESPACE}`,
    20_000,
    async () => (await env.k(['get', 'sa', 'default', '-n', NAMESPACE])).code === 0,
  );
  await env.kOk(['run', 'app', '-n', NAMESPACE, '--image=registry.example/app:1']);
  await eventually(
    'pod app Running',
    30_000,
    async () => (await env.kOk(['get', 'pod', 'app', '-n', NAMESPACE, '-o', 'jsonpath={.status.phase}'])) === 'Running',
  );
});
after(async () => {
  await env?.stop();
});

describe('a ServiceAccount deleted with a live direct token and made again at once', () => {
  test('the old direct token never execs through a debugger visa approved right after the last visa was revoked; the binding waits out the token cache', async () => {
    const viewer = await request('viewer');
    await eventually(`binding of ${viewer}`, 30_000, () => bindingExists(viewer));
    const apiServer = await env.kOk(['config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}']);
    const issued = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`);
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const direct = join(env.dir, 'direct-remade.kubeconfig');
    await writeFile(
      direct,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: apiServer, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'u', user: { token: String(issued.body.token) } }],
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'c',
      }),
      { mode: 0o600 },
    );
    const run = (args: string[]) => kubectl(env.cp.binaries.kubectl, args, { kubeconfig: direct });
    // A first use: kube-apiserver now keeps this token's verification for 10 s.
    const listed = await run(['get', 'pods', '-n', NAMESPACE]);
    assert.equal(listed.code, 0, `the direct token works for the viewer visa: ${listed.stderr}`);

    const revoked = await call('POST', `/api/v1/visas/${viewer}/revoke`, { reason: 'done with it' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const account = serviceAccountName(people.cora.email);
    await eventually(
      'the ServiceAccount is deleted with the last visa',
      10_000,
      async () => (await env.k(['get', 'sa', account, '-n', 'kubevisa-visas'])).code !== 0,
    );
    const debug = await request('debugger');
    let attempts = 0;
    const ran: string[] = [];
    await eventually('kube-apiserver refuses the old direct token', 60_000, async () => {
      const attempt = await run(['exec', 'app', '-n', NAMESPACE, '--', 'echo', 'unrecorded']);
      attempts++;
      if (attempt.code === 0 || attempt.stdout.includes('unrecorded')) ran.push(attempt.stdout);
      return ran.length > 0 || /Unauthorized|must be logged in/.test(attempt.stderr);
    });
    assert.deepEqual(ran, [], `kubectl exec with the direct token never ran (${attempts} attempts)`);
    await eventually(`binding of ${debug}`, 60_000, () => bindingExists(debug));

    const trail = (action: string) => env.server!.store.listAudit({ action, personId: cora.personId, limit: 1000 });
    const deleted = (await env.server!.store.listAudit({ action: 'cluster.serviceaccount.delete', limit: 1000 })).find(
      (event) => event.details.name === account,
    );
    assert.ok(deleted, 'the deletion of the ServiceAccount is audited');
    const bound = (await trail('cluster.rolebinding.create')).find((event) => event.visaId === debug);
    assert.ok(bound, 'the debugger binding creation is audited');
    assert.ok(
      bound.at >= deleted.at + 10_000,
      `the binding (${bound.at}) waits out kube-apiserver's 10 s token cache after the deletion (${deleted.at})`,
    );
  });
});
