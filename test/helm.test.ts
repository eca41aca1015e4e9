// The Helm chart (deploy/helm/kubevisa) and the plain manifests made from it, checked with Helm built from Go
// modules (scripts/helm-binary.sh) and applied to the real test control plane: lint, render, server-side dry run,
// then for real — every object exists, the pods pass PodSecurity `restricted`, and kubevisa's ServiceAccount can do
// exactly what `kubevisa install` grants (installObjects in src/cluster/install.ts, the one source of truth).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { installObjects, type InstallObject } from '../src/cluster/install.ts';
import { startControlPlane, type ControlPlane } from '../src/dev/cluster/control-plane.ts';
import type { PolicyRule } from '../src/domain/model.ts';
import { SHIPPED_PROFILES } from '../src/rbac/profiles.ts';
import { loadServerConfig } from '../src/server/config.ts';
import {
  CHART_DIR,
  MANIFESTS,
  RBAC_TEMPLATE,
  helmBinary,
  rbacTemplate,
  renderManifests,
} from '../scripts/generate-deploy.ts';
import { kubectl, kubectlOk } from './support/kubectl.ts';

type Doc = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
} & Record<string, unknown>;

let helm: string;
let cp: ControlPlane;
let dir: string;

function run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 32 * 1024 * 1024, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function render(...set: string[]): Promise<Doc[]> {
  const args = [
    'template',
    'kubevisa',
    CHART_DIR,
    '--namespace',
    'kubevisa-system',
    ...set.flatMap((s) => ['--set', s]),
  ];
  const result = await run(helm, args);
  assert.equal(result.code, 0, result.stderr);
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as Doc | null)
    .filter((document): document is Doc => document !== null);
}

const k = (args: string[], input?: string) =>
  kubectl(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig, ...(input === undefined ? {} : { input }) });
const kOk = (args: string[], input?: string) =>
  kubectlOk(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig, ...(input === undefined ? {} : { input }) });

// What the rendered chart is applied with: the optional parts Kubernetes knows without extra CRDs turned on.
const APPLIED = [
  'store.engine=postgres',
  'secrets.postgresUrl=postgres://kubevisa@db.example:5432/kubevisa',
  'secrets.postgresPassword=pg-s3cret',
  'secrets.oidcClientSecret=s3cret',
  'ingress.enabled=true',
  'ingress.className=nginx',
  'createSystemNamespace=false',
];

before(async () => {
  helm = helmBinary();
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-helm-test-'));
});
after(async () => {
  await cp?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("the chart's RBAC template is generated from installObjects(), the objects `kubevisa install` applies", async () => {
  assert.equal(
    await readFile(RBAC_TEMPLATE, 'utf8'),
    rbacTemplate(),
    'deploy/helm/kubevisa/templates/rbac.yaml is stale: run node scripts/generate-deploy.ts',
  );
  // And Helm renders it to exactly those objects (with the system namespace only when asked for).
  const rendered = await render('createSystemNamespace=true');
  const key = (o: { kind: string; metadata: { name: string; namespace?: string } }) =>
    `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
  const byKey = new Map(rendered.map((o) => [key(o), o]));
  const expected = installObjects(SHIPPED_PROFILES);
  for (const object of expected)
    assert.deepEqual(byKey.get(key(object)), JSON.parse(JSON.stringify(object)), key(object));
  const withoutNamespace = await render();
  assert.ok(!withoutNamespace.some((o) => key(o) === 'Namespace /kubevisa-system'), 'Helm makes the release namespace');
  assert.ok(withoutNamespace.some((o) => key(o) === 'Namespace /kubevisa-visas'));
});

test('the plain manifests are the chart rendered with its defaults', async () => {
  assert.equal(
    await readFile(MANIFESTS, 'utf8'),
    renderManifests(helm),
    'deploy/manifests/kubevisa.yaml is stale: run node scripts/generate-deploy.ts',
  );
});

test('helm lint passes; a release outside kubevisa-system and replicas on SQLite are refused with what to do', async () => {
  const lint = await run(helm, ['lint', '--strict', CHART_DIR, '--namespace', 'kubevisa-system']);
  assert.equal(lint.code, 0, lint.stdout + lint.stderr);
  assert.match(lint.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  const elsewhere = await run(helm, ['template', 'kubevisa', CHART_DIR, '--namespace', 'default']);
  assert.notEqual(elsewhere.code, 0);
  assert.match(elsewhere.stderr, /install kubevisa into the namespace kubevisa-system .*not "default"/);
  const replicas = await run(helm, ['template', 'kubevisa', CHART_DIR, '-n', 'kubevisa-system', '--set', 'replicas=3']);
  assert.notEqual(replicas.code, 0);
  assert.match(replicas.stderr, /replicas > 1 needs store.engine: postgres/);
  // Not on PostgreSQL either, until replicas coordinate: a revoke on one must cut the streams open on the others.
  const onPostgres = await run(helm, [
    'template',
    'kubevisa',
    CHART_DIR,
    '-n',
    'kubevisa-system',
    '--set',
    'replicas=2',
    '--set',
    'store.engine=postgres',
    '--set',
    'secrets.postgresUrl=postgres://kubevisa@db.example:5432/kubevisa',
  ]);
  assert.notEqual(onPostgres.code, 0);
  assert.match(onPostgres.stderr, /kubevisa runs one replica for now/);
});

test('the Deployment is hardened and probed; optional parts render when enabled; the config passes the server parser', async () => {
  const docs = await render(
    ...APPLIED,
    'serviceMonitor.enabled=true',
    'tls.certManager.enabled=true',
    'tls.certManager.issuerRef.name=ca',
  );
  const kinds = new Set(docs.map((d) => d.kind));
  for (const kind of [
    'Deployment',
    'Service',
    'Ingress',
    'NetworkPolicy',
    'ServiceMonitor',
    'Certificate',
    'ConfigMap',
    'Secret',
  ]) {
    assert.ok(kinds.has(kind), `${kind} is rendered`);
  }
  const deployment = docs.find((d) => d.kind === 'Deployment') as unknown as {
    spec: {
      replicas: number;
      template: {
        spec: {
          serviceAccountName: string;
          automountServiceAccountToken: boolean;
          securityContext: Record<string, unknown>;
          containers: {
            args: string[];
            securityContext: Record<string, unknown>;
            livenessProbe: { httpGet: { path: string } };
            readinessProbe: { httpGet: { path: string } };
            resources: { requests: Record<string, string>; limits: Record<string, string> };
          }[];
        };
      };
    };
  };
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0]!;
  assert.equal(deployment.spec.replicas, 1);
  assert.equal(pod.serviceAccountName, 'kubevisa');
  assert.equal(pod.automountServiceAccountToken, true);
  assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(container.securityContext.readOnlyRootFilesystem, true);
  assert.equal(container.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(container.securityContext.capabilities, { drop: ['ALL'] });
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.ok(container.resources.requests.cpu && container.resources.limits.memory);

  // The ConfigMap's server.yaml and the Secret's secrets.yaml, merged as the pod's args say, pass the real parser.
  const configMap = docs.find((d) => d.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
  const secret = docs.find((d) => d.kind === 'Secret') as unknown as { stringData: Record<string, string> };
  assert.match(secret.stringData['secrets.yaml']!, /url: postgres:\/\/kubevisa@db\.example:5432\/kubevisa/);
  assert.equal(secret.stringData['postgres-password'], 'pg-s3cret');
  assert.doesNotMatch(configMap.data['server.yaml']!, /s3cret|postgres:\/\//, 'no secret in the ConfigMap');
  await writeFile(join(dir, 'server.yaml'), configMap.data['server.yaml']!);
  await writeFile(join(dir, 'secrets.yaml'), secret.stringData['secrets.yaml']!);
  assert.deepEqual(container.args, [
    'server',
    '--config',
    '/etc/kubevisa/config/server.yaml',
    '--config',
    '/etc/kubevisa/secrets/secrets.yaml',
  ]);
  const config = await loadServerConfig([join(dir, 'server.yaml'), join(dir, 'secrets.yaml')]);
  assert.equal(config.oidc.clientSecret, 's3cret');
  assert.deepEqual(config.store, {
    engine: 'postgres',
    url: 'postgres://kubevisa@db.example:5432/kubevisa',
    passwordFile: '/etc/kubevisa/secrets/postgres-password',
  });
  assert.deepEqual(config.clusters, [
    {
      name: 'local',
      kubeconfig: '/var/lib/kubevisa/clusters/local.in-cluster.kubeconfig',
      directMode: false,
      inCluster: {},
    },
  ]);
  assert.equal(config.tls?.certFile, '/etc/kubevisa/tls/tls.crt');
  assert.equal(config.listen.host, '0.0.0.0');
});

test('applies to the control plane: dry run, then for real; pods pass PodSecurity restricted; exactly the RBAC kubevisa needs', async () => {
  cp = await startControlPlane();
  // The namespace enforces PodSecurity restricted, so a pod that breaks it is refused.
  await kOk(['create', 'namespace', 'kubevisa-system']);
  await kOk([
    'label',
    'namespace',
    'kubevisa-system',
    'pod-security.kubernetes.io/enforce=restricted',
    'pod-security.kubernetes.io/warn=restricted',
  ]);
  const rendered = await run(helm, [
    'template',
    'kubevisa',
    CHART_DIR,
    '--namespace',
    'kubevisa-system',
    ...APPLIED.flatMap((s) => ['--set', s]),
  ]);
  assert.equal(rendered.code, 0, rendered.stderr);
  // A server-side dry run cannot place objects in a namespace the same run would create: kubevisa-visas is made first.
  await kOk(['create', 'namespace', 'kubevisa-visas']);
  const dryRun = await k(['apply', '--dry-run=server', '-f', '-'], rendered.stdout);
  assert.equal(dryRun.code, 0, dryRun.stderr);
  assert.doesNotMatch(dryRun.stderr, /would violate PodSecurity/);
  assert.equal((await k(['get', 'clusterrole', 'kubevisa:controller'])).code, 1, 'a dry run changes nothing');

  const applied = await k(['apply', '-f', '-'], rendered.stdout);
  assert.equal(applied.code, 0, applied.stderr);
  const docs = parseAllDocuments(rendered.stdout)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
  for (const doc of docs) {
    const args = ['get', doc.kind.toLowerCase(), doc.metadata.name, '-o', 'name'];
    if (doc.metadata.namespace) args.push('-n', doc.metadata.namespace);
    assert.equal((await k(args)).code, 0, `${doc.kind} ${doc.metadata.name} exists`);
  }
  await eventually(async () => {
    const pods = await kOk([
      'get',
      'pods',
      '-n',
      'kubevisa-system',
      '-l',
      'app.kubernetes.io/name=kubevisa',
      '-o',
      'name',
    ]);
    return pods.trim().split('\n').filter(Boolean).length === 1;
  }, 'the Deployment makes its pod in the restricted namespace');

  // What kubevisa's ServiceAccount may do, beyond what any ServiceAccount may, is exactly installObjects()'s rules.
  await kOk(['create', 'namespace', 'helm-baseline']);
  await kOk(['create', 'serviceaccount', 'baseline', '-n', 'helm-baseline']);
  const objects = installObjects(SHIPPED_PROFILES);
  for (const namespace of ['kubevisa-visas', 'kubevisa-system', 'helm-baseline', 'payments']) {
    const granted = await rulesOf('system:serviceaccount:kubevisa-system:kubevisa', namespace);
    const everyone = await rulesOf('system:serviceaccount:helm-baseline:baseline', namespace);
    const extra = [...granted].filter((rule) => !everyone.has(rule)).sort();
    assert.deepEqual(extra, [...expectedRules(objects, namespace)].sort(), `rights in ${namespace}`);
  }
  // The human-facing view says the same, and a few things kubevisa must never be able to do.
  const listed = await kOk([
    'auth',
    'can-i',
    '--list',
    '-n',
    'kubevisa-visas',
    '--as',
    'system:serviceaccount:kubevisa-system:kubevisa',
  ]);
  assert.match(listed, /serviceaccounts\/token\s+\[\]\s+\[\]\s+\[create\]/);
  const as = ['--as', 'system:serviceaccount:kubevisa-system:kubevisa'];
  for (const forbidden of [
    ['get', 'secrets', '-A'],
    ['create', 'clusterrolebindings'],
    ['impersonate', 'users'],
    ['impersonate', 'groups'],
    ['impersonate', 'serviceaccounts', '-n', 'default'],
    ['bind', 'clusterroles/cluster-admin'],
    ['escalate', 'clusterroles/cluster-admin'],
    ['create', 'clusterroles'],
    ['create', 'serviceaccounts/token', '-n', 'default'],
  ]) {
    const answer = await k(['auth', 'can-i', ...forbidden, ...as]);
    assert.equal(answer.stdout.trim(), 'no', `kubevisa may not: ${forbidden.join(' ')}`);
  }
});

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.fail(`not true within ${timeoutMs} ms: ${what}`);
}

/** A subject's rules in a namespace (SelfSubjectRulesReview, as `kubectl auth can-i --list`), one string per verb. */
async function rulesOf(user: string, namespace: string): Promise<Set<string>> {
  const review = JSON.parse(
    await kOk(
      ['create', '--validate=false', '-f', '-', '-o', 'json', '--as', user],
      JSON.stringify({ apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } }),
    ),
  ) as {
    status: { resourceRules?: PolicyRule[]; nonResourceRules?: { verbs: string[]; nonResourceURLs: string[] }[] };
  };
  const rules = new Set<string>();
  for (const rule of review.status.resourceRules ?? []) for (const atom of atoms(rule)) rules.add(atom);
  for (const rule of review.status.nonResourceRules ?? []) {
    for (const url of rule.nonResourceURLs) for (const verb of rule.verbs) rules.add(`url ${url} ${verb}`);
  }
  return rules;
}

/** The rules installObjects() gives kubevisa's ServiceAccount that apply in `namespace`. */
function expectedRules(objects: InstallObject[], namespace: string): Set<string> {
  const subjectIsKubevisa = (o: InstallObject) =>
    'subjects' in o &&
    o.subjects.some((s) => s.kind === 'ServiceAccount' && s.name === 'kubevisa' && s.namespace === 'kubevisa-system');
  const rules = new Set<string>();
  for (const binding of objects.filter(subjectIsKubevisa)) {
    if (binding.kind === 'RoleBinding' && binding.metadata.namespace !== namespace) continue;
    if (binding.kind !== 'RoleBinding' && binding.kind !== 'ClusterRoleBinding') continue;
    const role = objects.find(
      (o) =>
        o.kind === binding.roleRef.kind &&
        o.metadata.name === binding.roleRef.name &&
        (o.kind === 'ClusterRole' || o.metadata.namespace === namespace),
    );
    assert.ok(role && 'rules' in role, `${binding.roleRef.kind} ${binding.roleRef.name} is installed`);
    for (const rule of role.rules) for (const atom of atoms(rule)) rules.add(atom);
  }
  return rules;
}

function atoms(rule: PolicyRule): string[] {
  const out: string[] = [];
  for (const group of rule.apiGroups ?? ['']) {
    for (const resource of rule.resources ?? []) {
      for (const verb of rule.verbs) {
        const names = rule.resourceNames && rule.resourceNames.length > 0 ? rule.resourceNames : ['*'];
        for (const name of names) out.push(`${group}/${resource} ${name} ${verb}`);
      }
    }
  }
  return out;
}
