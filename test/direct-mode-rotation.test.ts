// A direct token carries the person's ServiceAccount by name, so a binding added after it was issued would reach it.
// Against the real server, control plane and kubectl: a gateway-only visa approved while a direct token lives is
// bound only after the ServiceAccount was made again and kube-apiserver's token cache forgot the old tokens; a logout
// ends a live direct token; someone without one gets new visas bound at once, with no rotation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serviceAccountName } from '../src/domain/names.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  type KubevisaEnv,
  type TestPerson,
} from './support/kubevisa-env.ts';
import { eventually, kubectl } from './support/kubectl.ts';

let env: KubevisaEnv;
let approver: string;
let apiServer: string;
const tokens = new Map<string, { token: string; personId: string }>();

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

async function grant(who: TestPerson, profile: string, namespace: string): Promise<string> {
  const requested = await call('POST', '/api/v1/visas', tokens.get(who.email)!.token, {
    profile,
    cluster: CLUSTER,
    namespaces: [namespace],
    duration: '1h',
    reason: 'rotation test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const id = String(requested.body.id);
  const approved = await call('POST', `/api/v1/visas/${id}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  return id;
}

const bindingExists = async (visaId: string, namespace: string) =>
  (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', namespace])).code === 0;

/** A kubeconfig straight at kube-apiserver with a direct token from the credential API. */
async function directKubeconfig(who: TestPerson): Promise<string> {
  const issued = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, tokens.get(who.email)!.token);
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  const file = join(env.dir, `direct-${who.sub}.kubeconfig`);
  await writeFile(
    file,
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
  return file;
}

const run = (kubeconfig: string, args: string[]) => kubectl(env.cp.binaries.kubectl, args, { kubeconfig });

const trail = (action: string, personId: string) => env.server!.store.listAudit({ action, personId, limit: 10_000 });

const uidOf = (who: TestPerson) =>
  env.kOk(['get', 'sa', serviceAccountName(who.email), '-n', 'kubevisa-visas', '-o', 'jsonpath={.metadata.uid}']);

async function runningPod(namespace: string) {
  await env.kOk(['create', 'namespace', namespace]);
  await eventually(
    `default ServiceAccount in ${namespace}`,
    20_000,
    async () => (await env.k(['get', 'sa', 'default', '-n', namespace])).code === 0,
  );
  await env.kOk(['run', 'app', '-n', namespace, '--image=registry.example/app:1']);
  await eventually(
    `pod app Running in ${namespace}`,
    30_000,
    async () => (await env.kOk(['get', 'pod', 'app', '-n', namespace, '-o', 'jsonpath={.status.phase}'])) === 'Running',
  );
}

before(async () => {
  env = await startKubevisaEnv({ autoApproval: false, tls: true });
  await env.startInProcess();
  apiServer = await env.kOk(['config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}']);
  const admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  for (const who of [people.cora, people.carl]) tokens.set(who.email, await loginAs(env.serverUrl, who));
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'rotation',
    vendor: 'Acme',
    contractors: [people.cora.email, people.carl.email],
    sponsor: people.sam.email,
    endsAt: inDays(3),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['dr-*'], profiles: ['viewer', 'debugger'] },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await runningPod('dr-later');
  await runningPod('dr-carl');
});
after(async () => {
  await env?.stop();
});

describe('a direct token and a gateway-only visa approved after it', () => {
  test('the direct token never runs kubectl exec: kube-apiserver refuses it before the debugger binding exists, which appears only after the rotation; the gateway then execs, recorded', async (t) => {
    const cora = tokens.get(people.cora.email)!;
    const viewer = await grant(people.cora, 'viewer', 'dr-later');
    await eventually(`binding of ${viewer}`, 30_000, () => bindingExists(viewer, 'dr-later'));
    const direct = await directKubeconfig(people.cora);
    const listed = await run(direct, ['get', 'pods', '-n', 'dr-later']);
    assert.equal(listed.code, 0, `the direct token works for the viewer visa: ${listed.stderr}`);
    const exec = () => run(direct, ['exec', 'app', '-n', 'dr-later', '--', 'echo', 'unrecorded']);
    assert.notEqual((await exec()).code, 0, 'the viewer visa alone does not allow exec');

    const approvedAt = Date.now();
    const debug = await grant(people.cora, 'debugger', 'dr-later');
    // Every attempt until kube-apiserver refuses the token fails too: the binding is never there while it lives.
    // (`eventually` retries a check that throws, so what ran is collected and asserted after it.)
    let attempts = 0;
    const ran: string[] = [];
    const deadMs = await eventually('kube-apiserver refuses the old direct token', 60_000, async () => {
      const attempt = await exec();
      attempts++;
      if (attempt.code === 0 || attempt.stdout.includes('unrecorded')) ran.push(attempt.stdout);
      return ran.length > 0 || /Unauthorized|must be logged in/.test(attempt.stderr);
    });
    assert.deepEqual(ran, [], 'kubectl exec with the direct token never ran');
    t.diagnostic(
      `old direct token refused ${Date.now() - approvedAt} ms after the approval (${attempts} attempts, ${deadMs} ms polling)`,
    );
    await eventually(`binding of ${debug}`, 60_000, () => bindingExists(debug, 'dr-later'));
    const after = await exec();
    assert.notEqual(after.code, 0, `the direct token must not carry the recorded visa: ${after.stdout}${after.stderr}`);
    assert.match(after.stderr, /Unauthorized|must be logged in/);

    const [rotation, ...more] = await trail('cluster.serviceaccount.rotated', cora.personId);
    assert.equal(more.length, 0, 'one rotation');
    assert.equal(rotation!.visaId, debug);
    assert.match(String(rotation!.details.reason), new RegExp(`visa ${debug} \\(profile 'debugger'\\)`));
    const created = (await trail('cluster.rolebinding.create', cora.personId)).find((e) => e.visaId === debug);
    assert.ok(created, 'the debugger binding creation is audited');
    assert.ok(
      created.at >= rotation!.at + 11_000,
      `the binding (${created.at}) waits 11 s after the rotation (${rotation!.at}) for the token cache`,
    );
    assert.ok((await bindingExists(viewer, 'dr-later')) === true, 'the viewer binding stayed');

    const gateway = await env.writeGatewayKubeconfig(cora.token, 'cora');
    const viaGateway = await run(gateway, ['exec', 'app', '-n', 'dr-later', '--', 'echo', 'through-the-gateway']);
    assert.equal(viaGateway.code, 0, viaGateway.stderr);
    assert.equal(viaGateway.stdout, 'through-the-gateway\n');
    // The stream's end is written as the gateway closes it, which may be just after kubectl has exited.
    const streamEvent = async () =>
      (await trail('gateway.stream', cora.personId)).find((e) =>
        JSON.stringify(e.details.query).includes('through-the-gateway'),
      );
    await eventually('the gateway exec in the trail', 10_000, async () => (await streamEvent()) !== undefined);
    const stream = await streamEvent();
    assert.equal(stream?.visaId, debug, 'filed under the debugger visa');
    const recording = stream?.details.recording as { file: string } | undefined;
    assert.ok(recording, 'the exec through the gateway is recorded');
    assert.match(readFileSync(recording.file, 'utf8'), /through-the-gateway/);
  });
});

describe('people without a live direct token, and logouts', () => {
  test('a person without a live direct token gets a gateway-only visa bound at once: no rotation, same ServiceAccount', async () => {
    const carl = tokens.get(people.carl.email)!;
    const viewer = await grant(people.carl, 'viewer', 'dr-carl');
    await eventually(`binding of ${viewer}`, 30_000, () => bindingExists(viewer, 'dr-carl'));
    const uid = await uidOf(people.carl);
    const debug = await grant(people.carl, 'debugger', 'dr-carl');
    await eventually(`binding of ${debug}`, 30_000, () => bindingExists(debug, 'dr-carl'));
    assert.equal(await uidOf(people.carl), uid, 'the ServiceAccount was not made again');
    assert.deepEqual(await trail('cluster.serviceaccount.rotated', carl.personId), []);
    const revoked = await call('POST', `/api/v1/visas/${debug}/revoke`, approver, { reason: 'debugging done' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    await eventually(`binding of ${debug} gone`, 30_000, async () => !(await bindingExists(debug, 'dr-carl')));
  });

  test('a logout ends a live direct token: kubectl with it is refused by kube-apiserver within the token cache', async (t) => {
    const carl = tokens.get(people.carl.email)!;
    const direct = await directKubeconfig(people.carl);
    const listed = await run(direct, ['get', 'pods', '-n', 'dr-carl']);
    assert.equal(listed.code, 0, `the direct token works before the logout: ${listed.stderr}`);
    const loggedOutAt = Date.now();
    const out = await call('DELETE', '/api/v1/sessions/current', carl.token);
    assert.ok(out.status === 200 || out.status === 204, JSON.stringify(out.body));
    await eventually('kube-apiserver refuses the direct token after the logout', 60_000, async () => {
      const attempt = await run(direct, ['get', 'pods', '-n', 'dr-carl']);
      return attempt.code !== 0 && /Unauthorized|must be logged in/.test(attempt.stderr);
    });
    t.diagnostic(`direct token refused ${Date.now() - loggedOutAt} ms after the logout`);
    const [rotation] = await trail('cluster.serviceaccount.rotated', carl.personId);
    assert.ok(rotation, 'the rotation is audited');
    assert.match(String(rotation.details.reason), /session .* ended/);
    assert.ok(await bindingExists(await grantedViewerOf(carl.personId), 'dr-carl'), 'the viewer binding stayed');
  });
});

async function grantedViewerOf(personId: string): Promise<string> {
  const visas = await env.server!.store.listVisas({ personId, cluster: CLUSTER });
  const viewer = visas.find((visa) => visa.profile === 'viewer' && visa.state !== 'revoked');
  assert.ok(viewer);
  return viewer.id;
}
