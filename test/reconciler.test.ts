// The reconciler against a real cluster: drift repaired, strays removed, an unreachable cluster retried and
// repaired, and a server killed with SIGKILL at the worst moments leaving exactly the access the store grants.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  startServerProcess,
  waitForExit,
  type KubevisaEnv,
} from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';
import { serviceAccountName } from '../src/domain/names.ts';
import { readFile, stat } from 'node:fs/promises';

let env: KubevisaEnv;
let admin: string;
let approver: string;
let cora: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
const rbExists = async (namespace: string, visaId: string) =>
  (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', namespace])).code === 0;
const managedBindings = async (visaId: string) =>
  (
    await env.kOk([
      'get',
      'rolebindings',
      '-A',
      '-l',
      `kubevisa.io/visa=${visaId}`,
      '-o',
      'jsonpath={range .items[*]}{.metadata.namespace}{"\\n"}{end}',
    ])
  )
    .split('\n')
    .filter(Boolean)
    .sort();

async function request(namespaces: string[], duration = '1h') {
  const requested = await call('POST', '/api/v1/visas', cora, {
    profile: 'viewer',
    cluster: CLUSTER,
    namespaces,
    duration,
    reason: 'reconciler test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  return String(requested.body.id);
}

before(async () => {
  env = await startKubevisaEnv({ autoApproval: false });
  for (const ns of ['r-drift', 'r-unreach', 'r-rename', 'r-crash-1', 'r-crash-2', 'r-crash-3', 'r-crash-4'])
    await env.kOk(['create', 'namespace', ns]);
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = (await loginAs(env.serverUrl, people.cora)).token;
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'reconcile',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(10),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['r-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
});
after(async () => {
  await env?.stop();
});

describe('drift', () => {
  test('a managed RoleBinding edited or deleted by someone else is restored, and a stray one removed', async () => {
    const id = await request(['r-drift']);
    assert.equal((await call('POST', `/api/v1/visas/${id}/approve`, approver, {})).status, 200);
    await eventually('RoleBinding created', 5000, () => rbExists('r-drift', id));
    const name = `kubevisa-${id}`;
    // Someone adds themselves to the binding.
    await env.kOk([
      'patch',
      'rolebinding',
      name,
      '-n',
      'r-drift',
      '--type=json',
      '-p',
      JSON.stringify([
        {
          op: 'add',
          path: '/subjects/-',
          value: { kind: 'User', name: 'mallory@evil.example', apiGroup: 'rbac.authorization.k8s.io' },
        },
      ]),
    ]);
    await eventually('the edit is undone', 5000, async () => {
      const subjects = await env.kOk([
        'get',
        'rolebinding',
        name,
        '-n',
        'r-drift',
        '-o',
        'jsonpath={.subjects[*].name}',
      ]);
      return subjects.trim() === serviceAccountName(people.cora.email);
    });
    // Someone deletes it.
    await env.kOk(['delete', 'rolebinding', name, '-n', 'r-drift']);
    await eventually('the deleted binding is back', 5000, () => rbExists('r-drift', id));
    // Someone forges a binding that looks like kubevisa's, for a visa that does not exist.
    await env.kOk(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: {
          name: 'kubevisa-v_forged',
          namespace: 'r-drift',
          labels: { 'app.kubernetes.io/managed-by': 'kubevisa', 'kubevisa.io/visa': 'v_forged' },
        },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
        subjects: [{ kind: 'User', name: 'mallory@evil.example', apiGroup: 'rbac.authorization.k8s.io' }],
      }),
    );
    await eventually('the forged binding is removed', 5000, async () => !(await rbExists('r-drift', 'v_forged')));
    const repaired = await env.server!.store.listAudit({ action: 'cluster.rolebinding.repair-delete' });
    assert.ok(
      repaired.some((e) => e.visaId === id),
      'the repair is in the audit trail',
    );
  });

  test('a profile ClusterRole widened by hand is restored at once, audited, and the widening grants nothing', async () => {
    await env.kOk(['create', 'namespace', 'r-profile']);
    await env.kOk(['create', 'secret', 'generic', 'db', '-n', 'r-profile', '--from-literal=password=hunter2']);
    const id = await request(['r-profile']);
    assert.equal((await call('POST', `/api/v1/visas/${id}/approve`, approver, {})).status, 200);
    await eventually('RoleBinding created', 5000, () => rbExists('r-profile', id));
    const asCora = ['--as', `system:serviceaccount:kubevisa-visas:${serviceAccountName(people.cora.email)}`];
    const rules = async () =>
      env.kOk(['get', 'clusterrole', 'kubevisa:profile:viewer', '-o', 'jsonpath={.rules[*].resources}']);
    assert.doesNotMatch(await rules(), /secrets/);

    // Someone with cluster-admin adds `secrets get` to the profile every viewer visa binds.
    await env.kOk([
      'patch',
      'clusterrole',
      'kubevisa:profile:viewer',
      '--type=json',
      '-p',
      JSON.stringify([
        { op: 'add', path: '/rules/-', value: { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list'] } },
      ]),
    ]);
    await eventually('the widening is undone', 10_000, async () => !/secrets/.test(await rules()));
    const read = await env.k(['get', 'secret', 'db', '-n', 'r-profile', ...asCora]);
    assert.notEqual(read.code, 0, read.stdout);
    assert.match(read.stderr, /Forbidden|cannot get resource "secrets"/);
    assert.equal((await env.k(['get', 'pods', '-n', 'r-profile', ...asCora])).code, 0, 'the viewer visa still works');

    const repairs = await env.server!.store.listAudit({ action: 'cluster.drift.repaired' });
    const repair = repairs.find((event) => event.details['name'] === 'kubevisa:profile:viewer');
    assert.ok(repair, 'the repair is in the audit trail');
    assert.equal(repair.details['added'], 'apiGroups=[""] resources=[secrets] verbs=[get,list]');
    assert.match(String(repair.details['before']), /resources=\[secrets\]/);
    assert.doesNotMatch(String(repair.details['after']), /secrets/);
  });

  test('a widened profile kubevisa may not restore has its bindings withdrawn until it can (fail closed)', async () => {
    const id = await request(['r-profile']);
    assert.equal((await call('POST', `/api/v1/visas/${id}/approve`, approver, {})).status, 200);
    await eventually('RoleBinding created', 5000, () => rbExists('r-profile', id));
    // kubevisa's credential as an install from before it could restore profiles: no escalate, no update.
    const controller = JSON.parse(await env.kOk(['get', 'clusterrole', 'kubevisa:controller', '-o', 'json'])) as {
      metadata: Record<string, unknown>;
      rules: { verbs: string[]; resourceNames?: string[] }[];
    };
    const older = {
      ...controller,
      rules: controller.rules.map((rule) =>
        rule.verbs.includes('escalate') ? { ...rule, verbs: rule.verbs.filter((v) => v === 'bind') } : rule,
      ),
    };
    await env.kOk(['replace', '-f', '-'], JSON.stringify(older));
    try {
      await env.kOk([
        'patch',
        'clusterrole',
        'kubevisa:profile:viewer',
        '--type=json',
        '-p',
        JSON.stringify([
          { op: 'add', path: '/rules/-', value: { apiGroups: [''], resources: ['secrets'], verbs: ['get'] } },
        ]),
      ]);
      await eventually('the viewer bindings are withdrawn', 10_000, async () => !(await rbExists('r-profile', id)));
      const failed = await env.server!.store.listAudit({ action: 'cluster.drift.repair-failed' });
      assert.match(
        failed.at(-1)?.reason ?? '',
        /kubevisa:profile:viewer differs from its reviewed profile and could not be restored.*withdrawn/,
      );
    } finally {
      const current = JSON.parse(await env.kOk(['get', 'clusterrole', 'kubevisa:controller', '-o', 'json'])) as {
        metadata: Record<string, unknown>;
      };
      await env.kOk(['replace', '-f', '-'], JSON.stringify({ ...controller, metadata: current.metadata }));
    }
    // With its right back, the next pass restores the profile and the binding.
    await eventually('the profile is restored', 15_000, async () => {
      const rules = await env.kOk([
        'get',
        'clusterrole',
        'kubevisa:profile:viewer',
        '-o',
        'jsonpath={.rules[*].resources}',
      ]);
      return !/secrets/.test(rules);
    });
    await eventually('the binding is back', 10_000, () => rbExists('r-profile', id));
  });

  test("kubevisa's own ClusterRole widened by hand is put back; a subject added to its binding is reported", async () => {
    const rules = () => env.kOk(['get', 'clusterrole', 'kubevisa:controller', '-o', 'jsonpath={.rules[*].resources}']);
    await env.kOk([
      'patch',
      'clusterrole',
      'kubevisa:controller',
      '--type=json',
      '-p',
      JSON.stringify([
        { op: 'add', path: '/rules/-', value: { apiGroups: [''], resources: ['secrets'], verbs: ['list'] } },
      ]),
    ]);
    await eventually(
      'the widening of kubevisa:controller is undone',
      10_000,
      async () => !/secrets/.test(await rules()),
    );
    const repaired = await env.server!.store.listAudit({ action: 'cluster.drift.repaired' });
    assert.ok(
      repaired.some(
        (event) =>
          event.details['object'] === 'ClusterRole kubevisa:controller' &&
          event.details['added'] === 'apiGroups=[""] resources=[secrets] verbs=[list]',
      ),
      'the repair is in the audit trail',
    );

    const subject = { kind: 'User', name: 'mallory@evil.example', apiGroup: 'rbac.authorization.k8s.io' };
    await env.kOk([
      'patch',
      'clusterrolebinding',
      'kubevisa:controller',
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'add', path: '/subjects/-', value: subject }]),
    ]);
    try {
      await eventually('the extra subject is reported', 10_000, async () => {
        const detected = await env.server!.store.listAudit({ action: 'cluster.drift.detected' });
        return detected.some(
          (event) =>
            event.details['object'] === 'ClusterRoleBinding kubevisa:controller' &&
            event.details['added'] === 'subject User mallory@evil.example',
        );
      });
      const subjects = await env.kOk([
        'get',
        'clusterrolebinding',
        'kubevisa:controller',
        '-o',
        'jsonpath={.subjects[*].name}',
      ]);
      assert.match(subjects, /mallory/, 'kubevisa never writes its own bindings');
    } finally {
      await env.kOk([
        'patch',
        'clusterrolebinding',
        'kubevisa:controller',
        '--type=json',
        '-p',
        '[{"op":"remove","path":"/subjects/1"}]',
      ]);
    }
  });

  test('an unreachable cluster at a deadline is retried and repaired as soon as it answers', async () => {
    const id = await request(['r-unreach'], '6s');
    assert.equal((await call('POST', `/api/v1/visas/${id}/approve`, approver, {})).status, 200);
    await eventually('RoleBinding created', 5000, () => rbExists('r-unreach', id));
    const apiserver = env.cp.pidOf('kube-apiserver')!;
    process.kill(apiserver, 'SIGSTOP');
    try {
      await eventually('the reconciler reports the cluster unreachable', 40_000, async () =>
        env.server!.reconciler.status().some((r) => r.cluster === CLUSTER && r.error !== undefined),
      );
    } finally {
      process.kill(apiserver, 'SIGCONT');
    }
    await eventually(
      'the expired binding is removed once the cluster answers',
      40_000,
      async () => !(await rbExists('r-unreach', id)),
    );
  });
});

describe("kubevisa's own credential", () => {
  test('is renewed before half its life has passed, and every later request uses the new token', async () => {
    const file = env.config.clusters[0]!.kubeconfig;
    const before = await readFile(file, 'utf8');
    assert.deepEqual(await env.server!.renewClusterCredentials(), [], 'nothing is due right after install');
    // 13 h from now a 24 h token is past half its life.
    const renewed = await env.server!.renewClusterCredentials(Date.now() + 13 * 3600_000);
    assert.deepEqual(renewed, [CLUSTER]);
    const after = await readFile(file, 'utf8');
    assert.notEqual(after, before);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const jti = (yaml: string) => {
      const token = /token: *"?([A-Za-z0-9._-]+)/.exec(yaml)![1]!;
      return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
    };
    const who = await env.server!.clusters.get(CLUSTER)!.whoAmI();
    assert.equal(who.username, 'system:serviceaccount:kubevisa-system:kubevisa');
    // kube-apiserver's audit log names the token each request used (credential-id JTI=…).
    await eventually('kube-apiserver saw the new token', 10_000, async () => {
      const lines = (await readFile(env.cp.auditLogFile, 'utf8')).trim().split('\n').reverse();
      const last = lines
        .map(
          (l) =>
            JSON.parse(l) as { user?: { username?: string; extra?: Record<string, string[]> }; requestURI?: string },
        )
        .find(
          (e) =>
            e.user?.username === 'system:serviceaccount:kubevisa-system:kubevisa' &&
            e.requestURI?.includes('selfsubjectreviews'),
        );
      return last?.user?.extra?.['authentication.kubernetes.io/credential-id']?.[0] === `JTI=${jti(after)}`;
    });
    const audited = await env.server!.store.listAudit({ action: 'cluster.credential-renewed' });
    assert.equal(audited.length, 1);
  });
});

describe('a person the identity provider renames', () => {
  test('gets a new ServiceAccount: the old one, and every token issued for it, is gone; one made for someone else is re-made', async () => {
    const id = await request(['r-rename']);
    assert.equal((await call('POST', `/api/v1/visas/${id}/approve`, approver, {})).status, 200);
    await eventually('RoleBinding created', 5000, () => rbExists('r-rename', id));
    const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora);
    assert.equal(credential.status, 200, JSON.stringify(credential.body));
    const oldToken = await env.cp.writeTokenKubeconfig(String(credential.body.token), 'cora-before-rename');
    const pods = (kubeconfig: string) => env.k(['get', 'pods', '-n', 'r-rename', `--kubeconfig=${kubeconfig}`]);
    assert.equal((await pods(oldToken)).code, 0);

    const store = env.server!.store;
    const before = (await store.getPersonByEmail(people.cora.email))!;
    const rename = (email: string) =>
      store.transaction((tx) =>
        tx.upsertPersonFromLogin({
          issuer: before.issuer,
          subject: before.subject,
          email,
          displayName: before.displayName,
          groups: before.groups,
          now: Date.now(),
        }),
      );
    const renamed = 'cora.renamed@vendor.example';
    try {
      // The IdP renames her (her next login carries the new email); the old email may later go to someone else.
      await rename(renamed);
      await env.server!.reconciler.reconcileNow(CLUSTER);
      const subject = await env.kOk([
        'get',
        'rolebinding',
        `kubevisa-${id}`,
        '-n',
        'r-rename',
        '-o',
        'jsonpath={.subjects[*].name}',
      ]);
      assert.equal(subject.trim(), serviceAccountName(renamed), 'the binding follows her to the new name');
      // Monitoring expects the same binding the reconciler made: no drift reported for it.
      const scanned = await call('POST', `/api/v1/monitoring/scans/${CLUSTER}`, admin, {});
      assert.equal(scanned.status, 200, JSON.stringify(scanned.body));
      const findings = (scanned.body.findings ?? []) as { kind: string }[];
      assert.deepEqual(
        findings.filter((f) => f.kind === 'drift' && JSON.stringify(f).includes(id)),
        [],
      );
      const old = await env.k(['get', 'sa', serviceAccountName(people.cora.email), '-n', 'kubevisa-visas']);
      assert.notEqual(old.code, 0, 'the ServiceAccount of the old email is deleted');
      // kube-apiserver caches a token's validity for 10 s.
      await eventually(
        'the token of the old ServiceAccount is refused',
        15_000,
        async () => (await pods(oldToken)).code !== 0,
      );
      const fresh = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora);
      assert.equal(fresh.status, 200, JSON.stringify(fresh.body));
      assert.equal((await pods(await env.cp.writeTokenKubeconfig(String(fresh.body.token), 'cora-renamed'))).code, 0);

      // A ServiceAccount of her name that says it was made for another person is deleted and made again.
      const sa = ['sa', serviceAccountName(renamed), '-n', 'kubevisa-visas'];
      const uid = await env.kOk(['get', ...sa, '-o', 'jsonpath={.metadata.uid}']);
      await env.kOk(['annotate', ...sa, '--overwrite', 'kubevisa.io/person-id=p_someoneelse']);
      // Asking for a credential now does not mint a token for it: the endpoint has it re-made first.
      const third = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora);
      assert.equal(third.status, 200, JSON.stringify(third.body));
      assert.equal((await pods(await env.cp.writeTokenKubeconfig(String(third.body.token), 'cora-remade'))).code, 0);
      assert.equal(
        await env.kOk(['get', ...sa, '-o', 'jsonpath={.metadata.annotations.kubevisa\\.io/person-id}']),
        before.id,
      );
      assert.notEqual(await env.kOk(['get', ...sa, '-o', 'jsonpath={.metadata.uid}']), uid, 'a new ServiceAccount');
    } finally {
      await rename(people.cora.email);
      await env.server!.reconciler.reconcileNow(CLUSTER);
    }
  });
});

describe('crashes', () => {
  before(async () => {
    await env.server!.stop();
    env.server = undefined;
  });

  test('kill -9 between the intent and the cluster write leaves no revoked access after restart', async () => {
    let server = await startServerProcess(env);
    const id = await request(['r-crash-1']);
    assert.equal((await call('POST', `/api/v1/visas/${id}/approve`, approver, {})).status, 200);
    await eventually('RoleBinding created', 5000, () => rbExists('r-crash-1', id));
    server.kill('SIGTERM');
    await waitForExit(server);

    server = await startServerProcess(env, { KUBEVISA_FAULT: 'crash-after-intent' });
    // The revoke commits; the reconciler then records its intent and the process dies before deleting.
    await call('POST', `/api/v1/visas/${id}/revoke`, admin, { reason: 'crash test' }).catch(() => undefined);
    await waitForExit(server);
    assert.equal(server.signalCode, 'SIGKILL');
    assert.equal(await rbExists('r-crash-1', id), true, 'the crash came before the cluster write');

    server = await startServerProcess(env);
    try {
      await eventually('the restart removes the access', 5000, async () => !(await rbExists('r-crash-1', id)));
      const visa = await call('GET', `/api/v1/visas/${id}`, cora);
      assert.equal(visa.body.state, 'revoked');
    } finally {
      server.kill('SIGTERM');
      await waitForExit(server);
    }
  });

  test('kill -9 right after approve returns leaves exactly the approved access after restart', async () => {
    let server = await startServerProcess(env);
    const id = await request(['r-crash-2', 'r-crash-3', 'r-crash-4']);
    const approved = await call('POST', `/api/v1/visas/${id}/approve`, approver, {
      namespaces: ['r-crash-2', 'r-crash-3'],
    });
    server.kill('SIGKILL');
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    await waitForExit(server);
    server = await startServerProcess(env);
    try {
      await eventually(
        'exactly the approved namespaces are bound',
        5000,
        async () => (await managedBindings(id)).join(',') === 'r-crash-2,r-crash-3',
      );
    } finally {
      server.kill('SIGTERM');
      await waitForExit(server);
    }
  });

  test('kill -9 between the intent and creating the access still grants exactly the approval after restart', async () => {
    let server = await startServerProcess(env, { KUBEVISA_FAULT: 'crash-after-intent' });
    const id = await request(['r-crash-4']);
    await call('POST', `/api/v1/visas/${id}/approve`, approver, {}).catch(() => undefined);
    await waitForExit(server);
    assert.deepEqual(await managedBindings(id), [], 'nothing was written before the crash');
    server = await startServerProcess(env);
    try {
      await eventually(
        'the approved access appears',
        5000,
        async () => (await managedBindings(id)).join(',') === 'r-crash-4',
      );
    } finally {
      server.kill('SIGTERM');
      await waitForExit(server);
    }
  });
});
