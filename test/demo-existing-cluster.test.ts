// `kubevisa demo --kubeconfig`: the demo in a cluster the user already has (the test control plane plays it), with
// no control plane of its own. It installs the least-privilege objects, walks to a revoked watch, and on Ctrl-C
// removes every object it created — and leaves alone what was there before. Then `kubevisa uninstall`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../src/dev/cluster/control-plane.ts';
import { SHIPPED_PROFILES } from '../src/rbac/profiles.ts';
import { loadServerConfig } from '../src/server/config.ts';
import { login, run } from './support/demo-journey.ts';
import { eventually, kubectl, kubectlBackground, kubectlOk } from './support/kubectl.ts';
import { cliPath } from './support/kubevisa-env.ts';

let cp: ControlPlane;
let dir: string;
let demo: (ReturnType<typeof kubectlBackground> & { child: ChildProcess }) | undefined;

const k = (args: string[]) => kubectl(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig });
const kOk = (args: string[]) => kubectlOk(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig });

/** Everything kubevisa may have made, by kind and name; empty when nothing is left. */
async function kubevisaObjects(): Promise<string[]> {
  const found: string[] = [];
  for (const namespace of ['kubevisa-system', 'kubevisa-visas']) {
    if ((await k(['get', 'namespace', namespace])).code === 0) found.push(`namespace/${namespace}`);
  }
  const clusterScoped = await kOk([
    'get',
    'clusterroles,clusterrolebindings',
    '-l',
    'app.kubernetes.io/part-of=kubevisa',
    '-o',
    'name',
  ]);
  const controller = await k([
    'get',
    'clusterrole/kubevisa:controller',
    'clusterrolebinding/kubevisa:controller',
    '-o',
    'name',
  ]);
  const bindings = await kOk([
    'get',
    'rolebindings',
    '-A',
    '-l',
    'app.kubernetes.io/managed-by=kubevisa',
    '-o',
    'name',
  ]);
  const profiles = await kOk(['get', 'clusterroles', '-o', 'name']);
  return [
    ...found,
    ...clusterScoped.split('\n'),
    ...controller.stdout.split('\n'),
    ...bindings.split('\n'),
    ...profiles.split('\n').filter((name) => name.startsWith('clusterrole.rbac.authorization.k8s.io/kubevisa:')),
  ]
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .filter((line, index, all) => all.indexOf(line) === index)
    .sort();
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-demo-existing-'));
  cp = await startControlPlane();
  // Something of the user's that the demo must leave alone: a namespace it would otherwise create.
  await kOk(['create', 'namespace', 'finance']);
  await kOk(['create', 'configmap', 'ledger-settings', '-n', 'finance', '--from-literal=owner=finance-team']);
});
after(async () => {
  if (demo && demo.child.exitCode === null) demo.child.kill('SIGKILL');
  await cp?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('demo --kubeconfig installs into the existing cluster, reaches a revoked watch, and Ctrl-C removes all it made', async () => {
  assert.deepEqual(await kubevisaObjects(), [], 'nothing of kubevisa before');
  demo = kubectlBackground(cliPath, ['demo', '--kubeconfig', cp.adminKubeconfig, '--dir', dir], {
    kubeconfig: '',
    timeoutMs: 300_000,
  });
  await demo.waitFor(/Press Ctrl-C to stop everything/, 120_000);
  const out = demo.output();
  const serverUrl = /server:\s+(https\S+)/.exec(out)![1]!;
  const caFile = /--ca-file (\S+)/.exec(out)![1]!;
  assert.match(out, new RegExp(`kube-apiserver ${cp.apiServerUrl.replaceAll('.', '\\.')}`), 'the existing cluster');
  assert.doesNotMatch(
    out,
    /Kubernetes v1\.37\.2 control plane|builds the Kubernetes binaries/,
    'no local control plane',
  );

  // The stumbles: the admin kubeconfig's path is printed, and the written server.yaml is a config the server loads.
  assert.equal(/admin:\s+(\S+)/.exec(out)?.[1], cp.adminKubeconfig);
  const configFile = /^\s+config:\s+(\S+) \(the server's config/m.exec(out)![1]!;
  const config = await loadServerConfig(configFile);
  assert.equal(`https://127.0.0.1:${config.listen.port}`, serverUrl);
  assert.equal(config.clusters[0]!.name, 'demo');
  assert.ok(existsSync(config.clusters[0]!.kubeconfig), "kubevisa's own credential is where the config says");

  // The least-privilege objects are in the cluster.
  const made = await kubevisaObjects();
  for (const expected of [
    'namespace/kubevisa-system',
    'namespace/kubevisa-visas',
    'clusterrole.rbac.authorization.k8s.io/kubevisa:controller',
    'clusterrolebinding.rbac.authorization.k8s.io/kubevisa:controller',
    ...SHIPPED_PROFILES.map((p) => `clusterrole.rbac.authorization.k8s.io/kubevisa:profile:${p.name}`),
  ]) {
    assert.ok(made.includes(expected), `${expected} was created: ${made.join(', ')}`);
  }

  const cora = { KUBEVISA_CONFIG_DIR: join(dir, 'cora'), KUBECONFIG: join(dir, 'cora', 'kubeconfig') };
  const sam = { KUBEVISA_CONFIG_DIR: join(dir, 'sam') };
  await login(serverUrl, caFile, cora.KUBEVISA_CONFIG_DIR, 'cora@vendor.example', 'cora');
  await login(serverUrl, caFile, sam.KUBEVISA_CONFIG_DIR, 'sam@corp.example', 'sam');
  const requested = await run(
    [
      'request',
      '--cluster',
      'demo',
      '--ns',
      'payments',
      '--profile',
      'developer',
      '--for',
      '1h',
      '--reason',
      'JIRA-1',
      '-o',
      'json',
    ],
    cora,
  );
  assert.equal(requested.code, 0, requested.stderr);
  const visa = JSON.parse(requested.stdout) as { id: string };
  const approved = await run(['approve', visa.id], sam);
  assert.equal(approved.code, 0, approved.stderr);
  assert.equal((await run(['kubeconfig', '--cluster', 'demo'], cora)).code, 0);
  await eventually('kubectl get pods -n payments works through the gateway', 15_000, async () => {
    const r = await kubectl(cp.binaries.kubectl, ['get', 'pods', '-n', 'payments'], {
      kubeconfig: cora.KUBECONFIG,
      env: cora,
    });
    if (r.code !== 0) throw new Error(r.stderr);
    return r.stdout.includes('payments-api');
  });
  const watch = kubectlBackground(cp.binaries.kubectl, ['get', 'pods', '-n', 'payments', '-w'], {
    kubeconfig: cora.KUBECONFIG,
    env: cora,
  });
  await watch.waitFor(/payments-api/);
  const revoked = await run(['revoke', visa.id, '--reason', 'done'], sam);
  assert.equal(revoked.code, 0, revoked.stderr);
  await eventually(
    'the open watch is closed by the revoke',
    5000,
    async () => watch.child.exitCode !== null || watch.child.signalCode !== null,
  );

  demo.child.kill('SIGINT');
  await new Promise((resolve) => demo!.child.once('exit', resolve));
  assert.equal(demo.child.exitCode, 0, demo.output().slice(-3000));
  assert.match(demo.output(), /everything the demo put in the cluster is removed/);
  assert.deepEqual(await kubevisaObjects(), [], 'every object kubevisa created is gone');
  await eventually('the namespaces the demo created are gone', 60_000, async () =>
    (
      await Promise.all(['payments', 'staging-web'].map(async (ns) => (await k(['get', 'namespace', ns])).code !== 0))
    ).every(Boolean),
  );
  assert.match(
    await kOk(['get', 'configmap', 'ledger-settings', '-n', 'finance', '-o', 'jsonpath={.data.owner}']),
    /finance-team/,
  );
  assert.equal(
    (await kOk(['get', 'pods', '-n', 'finance', '-o', 'name'])).trim(),
    '',
    'nothing written to a namespace that was there',
  );
});

test('kubevisa uninstall removes an installation, says so when there is none, and leaves a Helm release to Helm', async () => {
  const help = await run(['uninstall', '--help'], {});
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Examples?:[\s\S]*kubevisa uninstall --kubeconfig/);
  const data = join(dir, 'install-data');
  const installed = await run(
    ['install', '--cluster', 'existing', '--kubeconfig', cp.adminKubeconfig, '--data-dir', data],
    {},
    60_000,
  );
  assert.equal(installed.code, 0, installed.stderr);
  // A visa binding kubevisa made in some namespace goes too.
  await kOk(['create', 'namespace', 'team-a']);
  await kOk([
    'create',
    'rolebinding',
    'kubevisa-v-test',
    '-n',
    'team-a',
    '--clusterrole',
    'kubevisa:profile:viewer',
    '--serviceaccount',
    'kubevisa-visas:someone',
  ]);
  await kOk([
    'label',
    'rolebinding',
    'kubevisa-v-test',
    '-n',
    'team-a',
    'app.kubernetes.io/managed-by=kubevisa',
    'kubevisa.io/visa=v-test',
  ]);
  assert.ok((await kubevisaObjects()).length > 0);

  // Owned by a Helm release: refused, nothing deleted.
  await kOk([
    'annotate',
    'clusterrole',
    'kubevisa:controller',
    'meta.helm.sh/release-name=kv',
    'meta.helm.sh/release-namespace=kubevisa-system',
  ]);
  const refused = await run(['uninstall', '--kubeconfig', cp.adminKubeconfig], {}, 60_000);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /helm uninstall kv -n kubevisa-system .*\[ERR_INSTALLED_BY_HELM\]/);
  assert.equal((await k(['get', 'namespace', 'kubevisa-visas'])).code, 0, 'nothing was deleted');
  await kOk([
    'annotate',
    'clusterrole',
    'kubevisa:controller',
    'meta.helm.sh/release-name-',
    'meta.helm.sh/release-namespace-',
  ]);

  const removed = await run(['uninstall', '--kubeconfig', cp.adminKubeconfig, '-o', 'json'], {}, 90_000);
  assert.equal(removed.code, 0, removed.stderr);
  const { removed: list } = JSON.parse(removed.stdout) as { removed: string[] };
  assert.ok(list.includes('RoleBinding team-a/kubevisa-v-test'), list.join(', '));
  assert.ok(list.includes('Namespace kubevisa-visas'), list.join(', '));
  assert.deepEqual(await kubevisaObjects(), []);
  const again = await run(['uninstall', '--kubeconfig', cp.adminKubeconfig], {}, 60_000);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /not installed in this cluster: nothing to remove/);
});
