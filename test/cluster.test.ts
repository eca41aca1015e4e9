// The cluster side against a real kube-apiserver: install with an admin's kubeconfig, then everything else with
// kubevisa's own credential only — granting a visa, what that credential is refused, TokenRequest and its
// invalidation, typed errors, and the drift watch. Checks go through the real kubectl as a person would run it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createClusterClient, type ClusterClient, type RoleBindingEvent } from '../src/cluster/client.ts';
import {
  AlreadyExists,
  ClusterForbidden,
  ClusterUnreachable,
  NamespaceMissing,
  ObjectMissing,
} from '../src/cluster/errors.ts';
import { installKubevisa, renewOwnToken } from '../src/cluster/install.ts';
import { EPOCH_ANNOTATION, FENCE_CONFIG_MAP } from '../src/cluster/fencing.ts';
import {
  CONTROLLER_USERNAME,
  NOT_AFTER_ANNOTATION,
  SYSTEM_NAMESPACE,
  VISAS_NAMESPACE,
  personServiceAccount,
  roleBindingDifferences,
  visaRoleBinding,
} from '../src/cluster/objects.ts';
import { InvalidInput, type KubevisaError } from '../src/domain/errors.ts';
import type { Visa } from '../src/domain/model.ts';
import { roleBindingName, serviceAccountName } from '../src/domain/names.ts';
import { debuggerProfile, developerProfile, viewerProfile } from '../src/rbac/profiles.ts';
import { freePorts, startControlPlane, type ControlPlane } from '../src/dev/cluster/control-plane.ts';
import { eventually, kubectl, kubectlOk } from './support/kubectl.ts';

const CLUSTER = 'test';
let cp: ControlPlane;
let kubevisaKubeconfigYaml: string;
/** kubevisa's own credential as a file, for kubectl. */
let kubevisaKubeconfig: string;
let client: ClusterClient;
const progress: string[] = [];

const adminOk = (args: string[], input?: string) =>
  kubectlOk(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig, ...(input === undefined ? {} : { input }) });
const adminRun = (args: string[]) => kubectl(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig });
const asKubevisa = (args: string[]) => kubectl(cp.binaries.kubectl, args, { kubeconfig: kubevisaKubeconfig });

function aVisa(overrides: Partial<Visa> = {}): Visa {
  const now = Date.now();
  return {
    id: 'v_cluster1',
    engagementId: 'e_1',
    personId: 'p_carol',
    personEmail: 'carol@vendor.example',
    cluster: CLUSTER,
    namespaces: ['payments'],
    profile: 'viewer',
    reason: 'JIRA-123 investigate failed payouts',
    requestedAt: now,
    requestedSeconds: 3600,
    notBefore: now,
    notAfter: now + 3600_000,
    state: 'active',
    approvals: [],
    requiredApprovals: 1,
    ...overrides,
  };
}

async function rejection(promise: Promise<unknown>): Promise<KubevisaError> {
  try {
    await promise;
  } catch (error) {
    return error as KubevisaError;
  }
  throw new Error('expected the call to fail, and it succeeded');
}

before(async () => {
  cp = await startControlPlane();
  const installed = await installKubevisa({
    adminKubeconfigPath: cp.adminKubeconfig,
    clusterName: CLUSTER,
    profiles: [viewerProfile, developerProfile],
    onProgress: (message) => progress.push(message),
  });
  kubevisaKubeconfigYaml = installed.kubeconfigYaml;
  kubevisaKubeconfig = join(cp.workDir, 'kubevisa.kubeconfig');
  await writeFile(kubevisaKubeconfig, kubevisaKubeconfigYaml, { mode: 0o600 });
  client = createClusterClient({ name: CLUSTER, kubeconfigYaml: kubevisaKubeconfigYaml });
  for (const namespace of ['payments', 'other']) await adminOk(['create', 'namespace', namespace]);
});
after(async () => {
  await cp?.stop();
});

describe('install', () => {
  test('returns a self-contained kubeconfig that authenticates as kubevisa’s ServiceAccount', async () => {
    const whoami = await asKubevisa(['auth', 'whoami', '-o', 'json']);
    assert.equal(whoami.code, 0, whoami.stderr);
    assert.equal(JSON.parse(whoami.stdout).status.userInfo.username, CONTROLLER_USERNAME);
    assert.deepEqual(await client.whoAmI().then((who) => who.username), CONTROLLER_USERNAME);
    assert.match(kubevisaKubeconfigYaml, /certificate-authority-data: /);
    assert.doesNotMatch(kubevisaKubeconfigYaml, /client-certificate|client-key|certificate-authority:/);
    const token = /token: (\S+)/.exec(kubevisaKubeconfigYaml)?.[1] ?? '';
    assert.ok(token.length > 100);
    assert.ok(progress.length > 5);
    assert.ok(
      progress.every((line) => !line.includes(token.slice(-40))),
      'progress messages never carry the token',
    );
  });

  test('kubevisa may bind exactly the installed profiles, and a re-run with more profiles widens that', async () => {
    const bindable = (profile: string) =>
      client.canI({ verb: 'bind', group: 'rbac.authorization.k8s.io', resource: 'clusterroles', name: profile });
    assert.equal(await bindable('kubevisa:profile:viewer'), true);
    assert.equal(await bindable('kubevisa:profile:debugger'), false);
    assert.equal(await bindable('cluster-admin'), false);

    const again = await installKubevisa({
      adminKubeconfigPath: cp.adminKubeconfig,
      clusterName: CLUSTER,
      profiles: [viewerProfile, developerProfile, debuggerProfile],
    });
    assert.deepEqual(again.profileClusterRoles, [
      'kubevisa:profile:debugger',
      'kubevisa:profile:developer',
      'kubevisa:profile:viewer',
    ]);
    const role = JSON.parse(await adminOk(['get', 'clusterrole', 'kubevisa:controller', '-o', 'json'])) as {
      rules: { verbs: string[]; resourceNames?: string[] }[];
    };
    const bind = role.rules.filter((rule) => rule.verbs.includes('bind'));
    assert.deepEqual(bind, [
      {
        apiGroups: ['rbac.authorization.k8s.io'],
        resources: ['clusterroles'],
        verbs: ['bind', 'escalate', 'update'],
        resourceNames: ['kubevisa:profile:debugger', 'kubevisa:profile:developer', 'kubevisa:profile:viewer'],
      },
    ]);
    await eventually('bind on the debugger profile', 5_000, () => bindable('kubevisa:profile:debugger'));
    // The first credential keeps working: a re-install does not cut off a running kubevisa.
    assert.equal((await client.whoAmI()).username, CONTROLLER_USERNAME);
  });

  test('a re-run repairs kubevisa’s RBAC, even a binding re-pointed to another role (roleRef is immutable)', async () => {
    await adminOk(['delete', 'rolebinding', 'kubevisa:visas', '-n', VISAS_NAMESPACE]);
    await adminOk(['create', 'role', 'decoy', '-n', VISAS_NAMESPACE, '--verb=get', '--resource=configmaps']);
    await adminOk([
      'create',
      'rolebinding',
      'kubevisa:visas',
      '-n',
      VISAS_NAMESPACE,
      '--role=decoy',
      '--serviceaccount=kubevisa-system:kubevisa',
    ]);
    await adminOk([
      'patch',
      'clusterrole',
      'kubevisa:controller',
      '--type=json',
      '-p',
      '[{"op":"remove","path":"/rules/0"}]',
    ]);
    const messages: string[] = [];
    await installKubevisa({
      adminKubeconfigPath: cp.adminKubeconfig,
      clusterName: CLUSTER,
      profiles: [viewerProfile, developerProfile, debuggerProfile],
      onProgress: (message) => messages.push(message),
    });
    assert.ok(messages.includes(`RoleBinding ${VISAS_NAMESPACE}/kubevisa:visas updated`), messages.join('\n'));
    const roleRef = await adminOk([
      'get',
      'rolebinding',
      'kubevisa:visas',
      '-n',
      VISAS_NAMESPACE,
      '-o',
      'jsonpath={.roleRef.name}',
    ]);
    assert.equal(roleRef, 'kubevisa:visas');
    const rules = JSON.parse(
      await adminOk(['get', 'clusterrole', 'kubevisa:controller', '-o', 'jsonpath={.rules}']),
    ) as {
      resources: string[];
      verbs: string[];
    }[];
    assert.ok(rules.some((rule) => rule.resources.includes('rolebindings') && rule.verbs.includes('create')));
  });
});

describe('granting a visa with kubevisa’s own credential', () => {
  const visa = aVisa();
  const sa = serviceAccountName(visa.personEmail);
  const person = `system:serviceaccount:${VISAS_NAMESPACE}:${sa}`;

  before(async () => {
    await client.createServiceAccount(personServiceAccount({ email: visa.personEmail, personId: visa.personId }));
    await client.createRoleBinding(visaRoleBinding({ visa, namespace: 'payments' }));
  });

  test('the person can get pods in the visa’s namespace and nowhere else (gateway: impersonation)', async () => {
    await eventually('the person may list pods in payments', 5_000, async () => {
      const result = await asKubevisa(['get', 'pods', '-n', 'payments', `--as=${person}`]);
      return result.code === 0;
    });
    for (const namespace of ['other', 'kube-system', VISAS_NAMESPACE]) {
      const refused = await asKubevisa(['get', 'pods', '-n', namespace, `--as=${person}`]);
      assert.notEqual(refused.code, 0, namespace);
      assert.match(refused.stderr, /forbidden/i, namespace);
    }
    const secrets = await asKubevisa(['get', 'secrets', '-n', 'payments', `--as=${person}`]);
    assert.notEqual(secrets.code, 0);
  });

  test('the person can get pods in the visa’s namespace and nowhere else (direct: TokenRequest)', async () => {
    const issued = await client.createServiceAccountToken(sa, 600);
    const personKubeconfig = await cp.writeTokenKubeconfig(issued.token);
    const asPerson = (args: string[]) => kubectl(cp.binaries.kubectl, args, { kubeconfig: personKubeconfig });
    const allowed = await asPerson(['get', 'pods', '-n', 'payments']);
    assert.equal(allowed.code, 0, allowed.stderr);
    const refused = await asPerson(['get', 'pods', '-n', 'other']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, new RegExp(`User "${person}" cannot list resource "pods"`));
  });

  test('the managed lists hold the visa’s objects and never kubevisa’s own', async () => {
    const bindings = await client.listManagedRoleBindings();
    assert.deepEqual(
      bindings.map((b) => `${b.metadata.namespace}/${b.metadata.name}`),
      [`payments/${roleBindingName(visa.id)}`],
    );
    assert.deepEqual(roleBindingDifferences(bindings[0]!, visaRoleBinding({ visa, namespace: 'payments' })), []);
    assert.ok(bindings[0]!.metadata.resourceVersion);
    const accounts = await client.listManagedServiceAccounts();
    assert.deepEqual(
      accounts.map((a) => a.metadata.name),
      [sa],
    );
    assert.equal(accounts[0]!.metadata.annotations['kubevisa.io/person'], visa.personEmail);
  });

  test('a second create is AlreadyExists; deleting what is gone is not an error', async () => {
    const again = await rejection(client.createRoleBinding(visaRoleBinding({ visa, namespace: 'payments' })));
    assert.ok(again instanceof AlreadyExists, String(again));
    assert.equal(again.code, 'ERR_ALREADY_EXISTS');
    assert.equal(await client.deleteRoleBinding('payments', 'kubevisa-never-was'), false);
    assert.equal(await client.deleteServiceAccount('never-was'), false);
    assert.equal(await client.getRoleBinding('payments', 'kubevisa-never-was'), undefined);
  });

  test('replaceRoleBinding restores a binding someone edited', async () => {
    const name = roleBindingName(visa.id);
    await adminOk([
      'annotate',
      'rolebinding',
      name,
      '-n',
      'payments',
      '--overwrite',
      `${NOT_AFTER_ANNOTATION}=2099-01-01T00:00:00Z`,
    ]);
    await adminOk(['label', 'rolebinding', name, '-n', 'payments', '--overwrite', 'kubevisa.io/person=someone-else']);
    const desired = visaRoleBinding({ visa, namespace: 'payments' });
    const drifted = await client.getRoleBinding('payments', name);
    assert.ok(drifted);
    assert.deepEqual(roleBindingDifferences(drifted, desired), [
      `label kubevisa.io/person is 'someone-else', expected '${desired.metadata.labels['kubevisa.io/person']}'`,
      `annotation ${NOT_AFTER_ANNOTATION} is '2099-01-01T00:00:00Z', expected '${desired.metadata.annotations[NOT_AFTER_ANNOTATION]}'`,
    ]);
    const restored = await client.replaceRoleBinding({
      ...desired,
      metadata: { ...desired.metadata, resourceVersion: drifted.metadata.resourceVersion! },
    });
    assert.deepEqual(roleBindingDifferences(restored, desired), []);
  });

  test('revoking: deleting the RoleBinding takes the access away', async () => {
    const other = aVisa({ id: 'v_cluster2', namespaces: ['other'] });
    await client.createRoleBinding(visaRoleBinding({ visa: other, namespace: 'other' }));
    await eventually('access to other', 5_000, async () => {
      return (await asKubevisa(['get', 'pods', '-n', 'other', `--as=${person}`])).code === 0;
    });
    assert.equal(await client.deleteRoleBinding('other', roleBindingName(other.id)), true);
    await eventually('no access to other', 5_000, async () => {
      return (await asKubevisa(['get', 'pods', '-n', 'other', `--as=${person}`])).code !== 0;
    });
  });
});

describe('what kubevisa’s credential is refused', () => {
  const sa = serviceAccountName('carol@vendor.example');

  for (const role of ['cluster-admin', 'admin', 'edit']) {
    test(`a RoleBinding to ClusterRole ${role}`, async () => {
      const refused = await asKubevisa([
        'create',
        'rolebinding',
        `steal-${role}`,
        '-n',
        'payments',
        `--clusterrole=${role}`,
        `--serviceaccount=${VISAS_NAMESPACE}:${sa}`,
      ]);
      assert.notEqual(refused.code, 0);
      assert.match(
        refused.stderr,
        /forbidden: user "system:serviceaccount:kubevisa-system:kubevisa" .* is attempting to grant RBAC permissions not currently held/,
      );
      // The client refuses it too, before the cluster is asked.
      const binding = visaRoleBinding({ visa: aVisa(), namespace: 'payments' });
      const error = await rejection(
        client.createRoleBinding({ ...binding, roleRef: { ...binding.roleRef, name: role } }),
      );
      assert.ok(error instanceof InvalidInput, String(error));
    });
  }

  test('a RoleBinding to a kubevisa-looking ClusterRole that install did not list: ClusterForbidden with the API’s words', async () => {
    await adminOk(['create', 'clusterrole', 'kubevisa:profile:sneaky', '--verb=get', '--resource=secrets']);
    const binding = visaRoleBinding({ visa: aVisa({ id: 'v_sneaky' }), namespace: 'payments' });
    const error = await rejection(
      client.createRoleBinding({ ...binding, roleRef: { ...binding.roleRef, name: 'kubevisa:profile:sneaky' } }),
    );
    assert.ok(error instanceof ClusterForbidden, String(error));
    assert.equal(error.code, 'ERR_CLUSTER_FORBIDDEN');
    assert.match(error.message, /is attempting to grant RBAC permissions not currently held/);
    assert.match(error.message, /Resources:\["secrets"\]/);
    assert.equal(error.details?.['kubernetesStatus'], 403);
  });

  test('a ClusterRoleBinding, even to a profile', async () => {
    const refused = await asKubevisa([
      'create',
      'clusterrolebinding',
      'everywhere',
      '--clusterrole=kubevisa:profile:viewer',
      `--serviceaccount=${VISAS_NAMESPACE}:${sa}`,
    ]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /cannot create resource "clusterrolebindings"/);
  });

  test('reading Secrets, anywhere', async () => {
    for (const args of [['-A'], ['-n', 'kube-system'], ['-n', VISAS_NAMESPACE], ['-n', 'kubevisa-system']]) {
      const refused = await asKubevisa(['get', 'secrets', ...args]);
      assert.notEqual(refused.code, 0, args.join(' '));
      assert.match(refused.stderr, /cannot list resource "secrets"/, args.join(' '));
    }
  });

  test('impersonating a user, a group, or a ServiceAccount outside kubevisa-visas', async () => {
    await adminOk(['create', 'serviceaccount', 'victim', '-n', 'other']);
    for (const extra of [
      ['--as=jane@example.com'],
      ['--as=system:admin'],
      ['--as=system:serviceaccount:other:victim'],
      ['--as=system:serviceaccount:kube-system:default'],
      [`--as=system:serviceaccount:${VISAS_NAMESPACE}:${sa}`, '--as-group=system:masters'],
    ]) {
      // /version is readable by every authenticated identity, so only the impersonation itself can fail.
      const refused = await asKubevisa(['get', '--raw', '/version', ...extra]);
      assert.notEqual(refused.code, 0, extra.join(' '));
      assert.match(refused.stderr, /cannot impersonate/i, extra.join(' '));
    }
  });

  test('a token for a ServiceAccount outside kubevisa-visas (its own excepted)', async () => {
    await adminOk(['create', 'serviceaccount', 'neighbour', '-n', 'kubevisa-system']);
    for (const [name, namespace] of [
      ['victim', 'other'],
      ['default', 'kube-system'],
      ['neighbour', 'kubevisa-system'],
    ] as const) {
      const refused = await asKubevisa(['create', 'token', name, '-n', namespace, '--duration=10m']);
      assert.notEqual(refused.code, 0, `${namespace}/${name}`);
      assert.match(refused.stderr, /cannot create resource "serviceaccounts\/token"/, `${namespace}/${name}`);
    }
  });

  test('escalate and updates beyond the profile ClusterRoles, other RBAC writes, and namespace writes (SelfSubjectAccessReview)', async () => {
    const rbacGroup = 'rbac.authorization.k8s.io';
    const refused = [
      { verb: 'escalate', group: rbacGroup, resource: 'clusterroles' },
      { verb: 'escalate', group: rbacGroup, resource: 'clusterroles', name: 'cluster-admin' },
      { verb: 'escalate', group: rbacGroup, resource: 'clusterroles', name: 'kubevisa:controller' },
      { verb: 'escalate', group: rbacGroup, resource: 'roles', namespace: 'payments' },
      { verb: 'create', group: rbacGroup, resource: 'clusterroles' },
      { verb: 'update', group: rbacGroup, resource: 'clusterroles', name: 'admin' },
      { verb: 'patch', group: rbacGroup, resource: 'clusterroles', name: 'kubevisa:profile:viewer' },
      { verb: 'delete', group: rbacGroup, resource: 'clusterroles', name: 'kubevisa:profile:viewer' },
      { verb: 'create', group: rbacGroup, resource: 'clusterrolebindings' },
      { verb: 'create', group: rbacGroup, resource: 'roles', namespace: 'payments' },
      { verb: 'impersonate', resource: 'users' },
      { verb: 'impersonate', resource: 'groups' },
      { verb: 'impersonate', resource: 'serviceaccounts', namespace: 'other' },
      { verb: 'create', resource: 'serviceaccounts', namespace: 'other' },
      { verb: 'delete', resource: 'namespaces', name: 'payments' },
      { verb: 'get', resource: 'secrets', namespace: 'payments' },
      { verb: 'create', resource: 'pods', namespace: 'payments' },
    ];
    for (const question of refused) {
      assert.equal(await client.canI(question), false, JSON.stringify(question));
    }
    for (const question of [
      // Restoring a profile someone widened (see kubevisaControllerRbac): those roles, by name, nothing else.
      { verb: 'update', group: rbacGroup, resource: 'clusterroles', name: 'kubevisa:profile:viewer' },
      { verb: 'escalate', group: rbacGroup, resource: 'clusterroles', name: 'kubevisa:profile:viewer' },
      { verb: 'create', group: rbacGroup, resource: 'rolebindings', namespace: 'payments' },
      { verb: 'watch', group: rbacGroup, resource: 'rolebindings' },
      { verb: 'list', group: rbacGroup, resource: 'clusterrolebindings' },
      { verb: 'impersonate', resource: 'serviceaccounts', namespace: VISAS_NAMESPACE, name: sa },
      { verb: 'create', resource: 'serviceaccounts', subresource: 'token', namespace: VISAS_NAMESPACE, name: sa },
      {
        verb: 'create',
        resource: 'serviceaccounts',
        subresource: 'token',
        namespace: 'kubevisa-system',
        name: 'kubevisa',
      },
    ]) {
      assert.equal(await client.canI(question), true, JSON.stringify(question));
    }
  });
});

describe('tokens', () => {
  const email = 'dave@vendor.example';
  const sa = serviceAccountName(email);

  test('a TokenRequest token expires within the asked window, authenticates, and dies with its ServiceAccount', async () => {
    await client.createServiceAccount(personServiceAccount({ email, personId: 'p_dave' }));
    const asked = Date.now();
    const issued = await client.createServiceAccountToken(sa, 900);
    const answered = Date.now();
    // kube-apiserver states expiry in whole seconds.
    assert.ok(issued.expirationTimestamp >= asked + 900_000 - 1000, `${issued.expirationTimestamp - asked} ms`);
    assert.ok(issued.expirationTimestamp <= answered + 900_000 + 1000, `${issued.expirationTimestamp - answered} ms`);

    const tokenKubeconfig = await cp.writeTokenKubeconfig(issued.token);
    const whoami = () =>
      kubectl(cp.binaries.kubectl, ['auth', 'whoami', '-o', 'json'], { kubeconfig: tokenKubeconfig });
    const before = await whoami();
    assert.equal(before.code, 0, before.stderr);
    assert.equal(JSON.parse(before.stdout).status.userInfo.username, `system:serviceaccount:${VISAS_NAMESPACE}:${sa}`);

    assert.equal(await client.deleteServiceAccount(sa), true);
    // kube-apiserver caches token authentication for up to 10 s.
    const tookMs = await eventually('the deleted ServiceAccount’s token is refused', 12_000, async () => {
      const after = await whoami();
      return after.code !== 0 && /Unauthorized|must be logged in/i.test(after.stderr);
    });
    assert.ok(tookMs <= 12_000);
  });

  test('lifetimes kube-apiserver would refuse or extend are refused before asking', async () => {
    for (const seconds of [0, 599, 3607, 900.5]) {
      const error = await rejection(client.createServiceAccountToken('anyone', seconds));
      assert.ok(error instanceof InvalidInput, `${seconds}: ${String(error)}`);
    }
  });

  test('a token for a ServiceAccount that does not exist is ObjectMissing', async () => {
    const error = await rejection(client.createServiceAccountToken('nobody-0000000000', 600));
    assert.ok(error instanceof ObjectMissing, String(error));
    assert.equal(error.code, 'ERR_OBJECT_MISSING');
  });

  test('renewOwnToken gets kubevisa a new working credential with its own rights only', async () => {
    const asked = Date.now();
    const renewed = await renewOwnToken(client, 1200);
    assert.ok(renewed.expirationTimestamp >= asked + 1_200_000 - 1000);
    assert.ok(renewed.expirationTimestamp <= Date.now() + 1_200_000 + 1000);
    assert.notEqual(renewed.kubeconfigYaml, kubevisaKubeconfigYaml);
    const next = createClusterClient({ name: CLUSTER, kubeconfigYaml: renewed.kubeconfigYaml });
    assert.equal((await next.whoAmI()).username, CONTROLLER_USERNAME);
    assert.equal(await next.namespaceExists('payments'), true);
  });
});

describe('typed errors', () => {
  test('a RoleBinding in a namespace that does not exist is NamespaceMissing', async () => {
    const visa = aVisa({ id: 'v_nowhere', namespaces: ['does-not-exist'] });
    const error = await rejection(client.createRoleBinding(visaRoleBinding({ visa, namespace: 'does-not-exist' })));
    assert.ok(error instanceof NamespaceMissing, String(error));
    assert.equal(error.code, 'ERR_NAMESPACE_MISSING');
    assert.match(error.message, /namespace 'does-not-exist' does not exist in cluster 'test'/);
    assert.equal(await client.namespaceExists('does-not-exist'), false);
  });

  test('a RoleBinding in a namespace being deleted is NamespaceMissing', async () => {
    await adminOk(['create', 'namespace', 'leaving']);
    // A finalizer nobody removes keeps the namespace in Terminating until the test lets it go.
    await adminOk(
      ['create', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'hold', namespace: 'leaving', finalizers: ['example.com/hold'] },
      }),
    );
    await adminOk(['delete', 'namespace', 'leaving', '--wait=false']);
    try {
      const visa = aVisa({ id: 'v_leaving', namespaces: ['leaving'] });
      const error = await rejection(client.createRoleBinding(visaRoleBinding({ visa, namespace: 'leaving' })));
      assert.ok(error instanceof NamespaceMissing, String(error));
      assert.match(error.message, /namespace 'leaving' is being deleted/);
      assert.equal(await client.namespaceExists('leaving'), true);
    } finally {
      await adminOk([
        'patch',
        'configmap',
        'hold',
        '-n',
        'leaving',
        '--type=merge',
        '-p',
        '{"metadata":{"finalizers":null}}',
      ]);
    }
  });

  test('a server on a closed port is ClusterUnreachable, at once and saying why', async () => {
    const [port] = await freePorts(1);
    const unreachable = createClusterClient({
      name: 'gone',
      kubeconfigYaml: kubeconfigFor(`https://127.0.0.1:${port}`),
    });
    // "At once": the refusal itself is reported (ECONNREFUSED below), not a timeout after retries.
    const error = await rejection(unreachable.listManagedRoleBindings());
    assert.ok(error instanceof ClusterUnreachable, String(error));
    assert.equal(error.code, 'ERR_CLUSTER_UNREACHABLE');
    assert.equal(error.status, 503);
    assert.equal(
      error.message,
      `cannot list visa RoleBindings: cluster 'gone' at https://127.0.0.1:${port} is unreachable: connection refused (nothing listens on that port) (ECONNREFUSED)`,
    );
  });

  test('a server that never answers is ClusterUnreachable after the request timeout', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as { port: number };
      const stuck = createClusterClient({
        name: 'stuck',
        kubeconfigYaml: kubeconfigFor(`https://127.0.0.1:${port}`),
        requestTimeoutMs: 500,
      });
      const started = Date.now();
      const error = await rejection(stuck.namespaceExists('payments'));
      const took = Date.now() - started;
      assert.ok(took >= 450 && took < 3000, `${took} ms`);
      assert.ok(error instanceof ClusterUnreachable, String(error));
      assert.match(error.message, /is unreachable: no answer within 0\.5 s$/);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });
});

describe('watching visa RoleBindings', () => {
  const visa = aVisa({ id: 'v_watched', namespaces: ['other'] });
  const name = roleBindingName(visa.id);

  function collect(watcher: ClusterClient) {
    const events: (RoleBindingEvent & { at: number })[] = [];
    const errors: KubevisaError[] = [];
    const stop = watcher.watchManagedRoleBindings(
      (event) => events.push({ ...event, at: Date.now() }),
      (error) => errors.push(error),
    );
    const find = (type: string, test: (event: RoleBindingEvent) => boolean = () => true) =>
      events.find((event) => event.type === type && test(event));
    return { events, errors, stop, find };
  }
  const named = (event: RoleBindingEvent) => 'roleBinding' in event && event.roleBinding.metadata.name === name;

  before(async () => {
    await client.createRoleBinding(visaRoleBinding({ visa, namespace: 'other' }));
  });

  test('reports an admin’s edit and deletion within 2 s, and nothing after stop()', async () => {
    const watch = collect(client);
    try {
      await eventually('the existing binding is reported', 5_000, async () => watch.find('ADDED', named) !== undefined);
      const edited = Date.now();
      await adminOk([
        'annotate',
        'rolebinding',
        name,
        '-n',
        'other',
        '--overwrite',
        `${NOT_AFTER_ANNOTATION}=2099-01-01T00:00:00Z`,
      ]);
      await eventually('the edit is reported', 2_000, async () => watch.find('MODIFIED', named) !== undefined);
      const modified = watch.find('MODIFIED', named);
      assert.ok(modified && 'roleBinding' in modified);
      assert.ok(modified.at - edited < 2000, `${modified.at - edited} ms`);
      assert.deepEqual(roleBindingDifferences(modified.roleBinding, visaRoleBinding({ visa, namespace: 'other' })), [
        `annotation ${NOT_AFTER_ANNOTATION} is '2099-01-01T00:00:00Z', expected '${visaRoleBinding({ visa, namespace: 'other' }).metadata.annotations[NOT_AFTER_ANNOTATION]}'`,
      ]);

      await adminOk(['delete', 'rolebinding', name, '-n', 'other']);
      await eventually('the deletion is reported', 2_000, async () => watch.find('DELETED', named) !== undefined);

      // kubevisa's own RoleBindings are managed too, but never reported as visa bindings.
      assert.ok(
        watch.events.every(
          (event) => !('roleBinding' in event) || event.roleBinding.metadata.name.startsWith('kubevisa-'),
        ),
      );
      assert.deepEqual(watch.errors, []);
    } finally {
      watch.stop();
    }
    const count = watch.events.length;
    await client.createRoleBinding(visaRoleBinding({ visa, namespace: 'other' }));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(watch.events.length, count, 'no event after stop()');
  });

  test('resumes where it was when the server ends each watch, without replaying', async () => {
    const resuming = createClusterClient({
      name: CLUSTER,
      kubeconfigYaml: kubevisaKubeconfigYaml,
      watchTimeoutSeconds: 1,
    });
    const watch = collect(resuming);
    try {
      await eventually('the existing binding is reported', 5_000, async () => watch.find('ADDED', named) !== undefined);
      const addedBefore = watch.events.filter((event) => event.type === 'ADDED').length;
      // Three server-side ends of the watch.
      await new Promise((resolve) => setTimeout(resolve, 3500));
      await adminOk(['label', 'rolebinding', name, '-n', 'other', 'seen-by=test']);
      await eventually(
        'the edit is reported after the restarts',
        2_000,
        async () => watch.find('MODIFIED', named) !== undefined,
      );
      assert.equal(watch.events.filter((event) => event.type === 'ADDED').length, addedBefore, 'no replay');
      assert.deepEqual(watch.errors, []);
      // The audit log proves the server really ended the watch and kubevisa resumed from a resourceVersion.
      const watches = auditEvents().filter(
        (event) =>
          event.verb === 'watch' &&
          event.user?.username === CONTROLLER_USERNAME &&
          event.requestURI?.includes('timeoutSeconds=1') === true,
      );
      // One audit event per stage (ResponseStarted, ResponseComplete) of each watch request.
      const requests = [...new Map(watches.map((event) => [event.auditID, event.requestURI ?? ''])).values()];
      assert.ok(requests.length >= 3, `${requests.length} watch requests`);
      assert.ok(
        requests.slice(1).every((uri) => /[?&]resourceVersion=\d+/.test(uri)),
        requests.join('\n'),
      );
    } finally {
      watch.stop();
    }
  });

  test('reports failures to onError and keeps retrying', async () => {
    const [port] = await freePorts(1);
    const unreachable = createClusterClient({
      name: 'gone',
      kubeconfigYaml: kubeconfigFor(`https://127.0.0.1:${port}`),
    });
    const watch = collect(unreachable);
    try {
      await eventually('two failures reported', 5_000, async () => watch.errors.length >= 2);
      assert.ok(watch.errors.every((error) => error instanceof ClusterUnreachable));
    } finally {
      watch.stop();
    }
  });
});

describe('fenced deletes', () => {
  // Clients as leaders of successive terms; the fence starts at 5. Later describes must not see it: removed after.
  const leaderAt = (epoch: number) =>
    createClusterClient({ name: CLUSTER, kubeconfigYaml: kubevisaKubeconfigYaml, fencingEpoch: () => epoch });
  let termSix: ClusterClient;
  /** kubevisa's requests on one RoleBinding after the auditID `since`, as `verb` (kube-apiserver's own record). */
  const verbsOn = (name: string, since: number) =>
    auditEvents()
      .slice(since)
      .filter(
        (event) =>
          event.stage === 'ResponseComplete' &&
          event.user?.username === CONTROLLER_USERNAME &&
          event.requestURI?.includes(`/rolebindings/${name}`) === true,
      )
      .map((event) => event.verb);
  const visaIn = (id: string) => aVisa({ id, namespaces: ['payments'] });
  const listed = async (id: string) =>
    (await termSix.listManagedRoleBindings()).find((binding) => binding.metadata.name === roleBindingName(id));

  before(async () => {
    await leaderAt(5).raiseFence(5);
    termSix = leaderAt(6);
  });
  after(() => adminOk(['delete', 'configmap', FENCE_CONFIG_MAP, '-n', SYSTEM_NAMESPACE, '--ignore-not-found']));

  test('a binding seen with this term’s stamp goes in one request; one seen older is read, stamped, then deleted', async () => {
    await termSix.raiseFence(6);
    const fresh = visaIn('v_fence_fresh');
    await termSix.createRoleBinding(visaRoleBinding({ visa: fresh, namespace: 'payments' }));
    const seen = await listed(fresh.id);
    assert.equal(seen?.metadata.annotations[EPOCH_ANNOTATION], '6');
    const before = auditEvents().length;
    assert.equal(await termSix.deleteRoleBinding('payments', roleBindingName(fresh.id), seen), true);
    assert.deepEqual(verbsOn(roleBindingName(fresh.id), before), ['delete']);
    // The same call without what was seen: the three-request path.
    const unseen = visaIn('v_fence_unseen');
    await termSix.createRoleBinding(visaRoleBinding({ visa: unseen, namespace: 'payments' }));
    const beforeUnseen = auditEvents().length;
    assert.equal(await termSix.deleteRoleBinding('payments', roleBindingName(unseen.id)), true);
    assert.deepEqual(verbsOn(roleBindingName(unseen.id), beforeUnseen), ['get', 'delete']);
  });

  test('a binding edited since it was seen is still deleted: the stale version fails its precondition, then it is read again', async () => {
    const edited = visaIn('v_fence_edited');
    await termSix.createRoleBinding(visaRoleBinding({ visa: edited, namespace: 'payments' }));
    const seen = await listed(edited.id);
    await adminOk(['annotate', 'rolebinding', roleBindingName(edited.id), '-n', 'payments', 'note=edited']);
    const before = auditEvents().length;
    assert.equal(await termSix.deleteRoleBinding('payments', roleBindingName(edited.id), seen), true);
    assert.deepEqual(verbsOn(roleBindingName(edited.id), before), ['delete', 'get', 'delete']);
    assert.equal((await adminRun(['get', 'rolebinding', roleBindingName(edited.id), '-n', 'payments'])).code, 1);
  });

  test('a deposed leader cannot delete even a binding it stamped itself, on the one-request path', async () => {
    const kept = visaIn('v_fence_kept');
    const termSeven = leaderAt(7);
    await termSeven.raiseFence(7);
    await termSeven.createRoleBinding(visaRoleBinding({ visa: kept, namespace: 'payments' }));
    const seen = await listed(kept.id);
    await leaderAt(8).raiseFence(8);
    const refused = await rejection(termSeven.deleteRoleBinding('payments', roleBindingName(kept.id), seen));
    assert.equal(refused.code, 'ERR_FENCED', refused.message);
    assert.equal((await adminRun(['get', 'rolebinding', roleBindingName(kept.id), '-n', 'payments'])).code, 0);
    assert.equal(await leaderAt(8).deleteRoleBinding('payments', roleBindingName(kept.id), seen), true);
  });
});

interface AuditEvent {
  auditID?: string;
  stage?: string;
  verb?: string;
  requestURI?: string;
  user?: { username?: string };
}

function auditEvents(): AuditEvent[] {
  return readFileSync(cp.auditLogFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as AuditEvent);
}

/** A kubeconfig for a server that is not the test cluster (with the test cluster's CA and a dummy token). */
function kubeconfigFor(server: string): string {
  const withCa = kubevisaKubeconfigYaml.match(/certificate-authority-data: (\S+)/)?.[1] ?? '';
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: { server, 'certificate-authority-data': withCa } }],
    users: [{ name: 'u', user: { token: 'not-a-real-token' } }],
    contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'c',
  });
}
