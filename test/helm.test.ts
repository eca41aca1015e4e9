// The Helm chart (deploy/helm/kubevisa) and the plain manifests made from it, checked with Helm built from Go
// modules (scripts/helm-binary.sh) and applied to the real test control plane: lint, render, server-side dry run,
// then for real — every object exists, the pods pass PodSecurity `restricted`, and kubevisa's ServiceAccount can do
// exactly what `kubevisa install` grants (installObjects in src/cluster/install.ts, the one source of truth). Replicas
// on PostgreSQL share the signing and secret keys of one Secret, which `helm upgrade` keeps (lookup in the real
// cluster) and the server's own loaders accept as the kubelet mounts them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CHECKPOINT_KEY_FILE, loadOrCreateCheckpointKey } from '../src/audit/checkpoints.ts';
import { loadOrCreateSecretBox } from '../src/auth/secret-box.ts';
import { SIGNING_KEY_FILE, loadOrCreateSigningKey } from '../src/auth/signing-key.ts';
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
import { SHARED_KEY_FILES, mountSecretKeys } from './support/replicas.ts';

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
  'replicas=3',
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

test('helm lint passes; a release outside kubevisa-system, replicas on SQLite and replicas sharing one volume are refused with what to do', async () => {
  const lint = await run(helm, ['lint', '--strict', CHART_DIR, '--namespace', 'kubevisa-system']);
  assert.equal(lint.code, 0, lint.stdout + lint.stderr);
  assert.match(lint.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  const elsewhere = await run(helm, ['template', 'kubevisa', CHART_DIR, '--namespace', 'default']);
  assert.notEqual(elsewhere.code, 0);
  assert.match(elsewhere.stderr, /install kubevisa into the namespace kubevisa-system .*not "default"/);
  for (const count of ['2', '3']) {
    const replicas = await run(helm, [
      'template',
      'kubevisa',
      CHART_DIR,
      '-n',
      'kubevisa-system',
      '--set',
      `replicas=${count}`,
    ]);
    assert.notEqual(replicas.code, 0);
    assert.match(replicas.stderr, /replicas > 1 needs store.engine: postgres \(SQLite allows one writer/);
  }
  // On PostgreSQL, but with the one ReadWriteOnce data volume every replica would have to mount.
  const sharedVolume = await run(helm, [
    'template',
    'kubevisa',
    CHART_DIR,
    '-n',
    'kubevisa-system',
    ...['replicas=2', 'store.engine=postgres', 'persistence.enabled=true'].flatMap((s) => ['--set', s]),
  ]);
  assert.notEqual(sharedVolume.code, 0);
  assert.match(sharedVolume.stderr, /replicas > 1 cannot share persistence .*set persistence.enabled=false/);
  // Keys given in values are checked before anything is made.
  for (const [set, message] of [
    ['secrets.signingKey=not-a-key', /secrets.signingKey must be an Ed25519 private key in PKCS#8 PEM/],
    ['secrets.auditCheckpointKey=not-a-key', /secrets.auditCheckpointKey must be an Ed25519 private key in PKCS#8 PEM/],
    [`secrets.secretKey=${randomBytes(16).toString('base64')}`, /secrets.secretKey must be 32 random bytes in base64/],
  ] as const) {
    const bad = await run(helm, [
      'template',
      'kubevisa',
      CHART_DIR,
      '-n',
      'kubevisa-system',
      ...['store.engine=postgres', set].flatMap((s) => ['--set', s]),
    ]);
    assert.notEqual(bad.code, 0, set);
    assert.match(bad.stderr, message);
  }
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
          volumes: ({ name: string } & Record<string, unknown>)[];
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
  assert.equal(deployment.spec.replicas, 3);
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
  // The serving key arrives as root:<fsGroup> 0440 (not a Secret volume's default 0644, which kubevisa refuses for a
  // private key), and the fsGroup is the group kubevisa runs in, so readTlsKeyFile accepts it.
  assert.deepEqual(
    pod.volumes.find((v) => v.name === 'tls'),
    { name: 'tls', secret: { secretName: 'kubevisa-tls', defaultMode: 0o400 } },
  );
  assert.equal(pod.securityContext.fsGroup, pod.securityContext.runAsGroup);

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

type KeyedPod = {
  spec: {
    replicas: number;
    strategy: { type: string };
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        containers: {
          args: string[];
          volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
        }[];
        volumes: ({ name: string } & Record<string, unknown>)[];
      };
    };
  };
};
type SecretDoc = Doc & { data?: Record<string, string>; stringData?: Record<string, string> };

test('on PostgreSQL, N replicas roll one by one, keep one serving through a drain, and mount the same keys from the Secret', async () => {
  const docs = await render(...APPLIED);
  const deployment = docs.find((d) => d.kind === 'Deployment') as unknown as KeyedPod;
  assert.equal(deployment.spec.replicas, 3);
  assert.equal(deployment.spec.strategy.type, 'RollingUpdate');
  const pdb = docs.find((d) => d.kind === 'PodDisruptionBudget') as unknown as {
    spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
  };
  assert.ok(pdb, 'a PodDisruptionBudget is rendered for 3 replicas');
  assert.equal(pdb.spec.minAvailable, 1);
  assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
  for (const [label, value] of Object.entries(pdb.spec.selector.matchLabels)) {
    assert.equal(deployment.spec.template.metadata.labels[label], value, 'the budget selects the pods');
  }

  // Every pod mounts the two files of the Secret into its data folder, read-only, where the server's loaders look.
  const pod = deployment.spec.template.spec;
  const secret = docs.find((d) => d.kind === 'Secret') as SecretDoc;
  const mounts = pod.containers[0]!.volumeMounts.filter((m) => m.name === 'shared-keys');
  assert.deepEqual(
    mounts.map((m) => [m.mountPath, m.subPath, m.readOnly]),
    SHARED_KEY_FILES.map((name) => [`/var/lib/kubevisa/${name}`, name, true]),
  );
  assert.ok(pod.containers[0]!.volumeMounts.some((m) => m.name === 'data' && m.mountPath === '/var/lib/kubevisa'));
  assert.deepEqual(
    pod.volumes.find((v) => v.name === 'shared-keys'),
    {
      name: 'shared-keys',
      secret: {
        secretName: secret.metadata.name,
        defaultMode: 0o400,
        items: SHARED_KEY_FILES.map((name) => ({ key: name, path: name })),
      },
    },
  );
  assert.ok(!pod.containers[0]!.args.includes('--adopt-keys'), 'no server adopts keys unless asked');

  // The keys Helm generated are what the server loads, as mounted (a PKCS#8 Ed25519 PEM, 32 bytes in base64).
  assert.deepEqual(Object.keys(secret.data ?? {}).sort(), [...SHARED_KEY_FILES].sort());
  assert.match(Buffer.from(secret.data![SIGNING_KEY_FILE]!, 'base64').toString(), /^-----BEGIN PRIVATE KEY-----\n/);
  const [a, b] = [join(dir, 'replica-a'), join(dir, 'replica-b')];
  await mountSecretKeys(secret.data!, a);
  await mountSecretKeys(secret.data!, b);
  const [keyA, keyB] = [await loadOrCreateSigningKey(a), await loadOrCreateSigningKey(b)];
  assert.equal(keyA.created, false, 'the mounted key is used, not a new one');
  assert.equal(keyA.privateKey.asymmetricKeyType, 'ed25519');
  assert.equal(keyA.keyId, keyB.keyId);
  const [boxA, boxB] = [await loadOrCreateSecretBox(a), await loadOrCreateSecretBox(b)];
  assert.equal(boxA.keyId, boxB.keyId);
  assert.equal(boxB.open(boxA.seal('refresh-token')), 'refresh-token');
  const [auditA, auditB] = [
    await loadOrCreateCheckpointKey(join(a, CHECKPOINT_KEY_FILE)),
    await loadOrCreateCheckpointKey(join(b, CHECKPOINT_KEY_FILE)),
  ];
  assert.equal(auditA.created, false);
  assert.equal(auditA.keyId, auditB.keyId);

  // Without a cluster to look in (helm template), each render makes new keys: set them in values there.
  const again = (await render(...APPLIED)).find((d) => d.kind === 'Secret') as SecretDoc;
  for (const name of SHARED_KEY_FILES) assert.notEqual(again.data![name], secret.data![name], name);

  // Adopting keys (rotation, one replica) is a value, off by default.
  const adopting = (await render(...APPLIED, 'replicas=1', 'adoptKeys=true')).find(
    (d) => d.kind === 'Deployment',
  ) as unknown as KeyedPod;
  assert.ok(adopting.spec.template.spec.containers[0]!.args.includes('--adopt-keys'));
  assert.ok(!(await render(...APPLIED, 'replicas=1')).some((d) => d.kind === 'PodDisruptionBudget'));

  // SQLite (the defaults, the plain manifests) has no shared keys: its one server makes its own in its data folder.
  const defaults = await render();
  const sqlite = defaults.find((d) => d.kind === 'Deployment') as unknown as KeyedPod;
  assert.ok(!sqlite.spec.template.spec.volumes.some((v) => v.name === 'shared-keys'));
  assert.equal((defaults.find((d) => d.kind === 'Secret') as SecretDoc).data, undefined);
});

test("keys given in values are the Secret's, byte for byte", async () => {
  const pemFile = join(dir, 'given-signing-key.pem');
  await writeFile(pemFile, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const secretKey = randomBytes(32).toString('base64');
  const result = await run(helm, [
    'template',
    'kubevisa',
    CHART_DIR,
    '-n',
    'kubevisa-system',
    ...APPLIED.flatMap((s) => ['--set', s]),
    '--set-file',
    `secrets.signingKey=${pemFile}`,
    '--set',
    `secrets.secretKey=${secretKey}`,
  ]);
  assert.equal(result.code, 0, result.stderr);
  const secret = parseAllDocuments(result.stdout)
    .map((d) => d.toJS() as SecretDoc | null)
    .find((d) => d?.kind === 'Secret')!;
  assert.equal(Buffer.from(secret.data![SIGNING_KEY_FILE]!, 'base64').toString(), await readFile(pemFile, 'utf8'));
  assert.equal(Buffer.from(secret.data!['session-encryption.key']!, 'base64').toString(), secretKey);
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
    return pods.trim().split('\n').filter(Boolean).length === 3;
  }, 'the Deployment makes its 3 pods in the restricted namespace');

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

test('helm install and helm upgrade keep the keys of the Secret in the cluster (lookup); a key set in values replaces only that key', async () => {
  // The release takes over the objects the previous test applied, whose Secret holds the keys of that render.
  const keysInCluster = async () =>
    (
      JSON.parse(await kOk(['get', 'secret', 'kubevisa-secrets', '-n', 'kubevisa-system', '-o', 'json'])) as {
        data: Record<string, string>;
      }
    ).data;
  const helmRelease = (verb: 'install' | 'upgrade', ...extra: string[]) =>
    run(helm, [
      verb,
      'kubevisa',
      CHART_DIR,
      '--namespace',
      'kubevisa-system',
      '--kubeconfig',
      cp.adminKubeconfig,
      ...APPLIED.flatMap((s) => ['--set', s]),
      ...extra,
    ]);
  const applied = await keysInCluster();
  for (const name of SHARED_KEY_FILES) assert.ok(applied[name], `${name} is in the applied Secret`);

  // Taking over objects kubectl applied: Helm relabels them as its own (a field kubectl's apply held).
  const installed = await helmRelease('install', '--take-ownership', '--force-conflicts');
  assert.equal(installed.code, 0, installed.stdout + installed.stderr);
  const afterInstall = await keysInCluster();
  for (const name of SHARED_KEY_FILES) assert.equal(afterInstall[name], applied[name], `install keeps ${name}`);

  const upgraded = await helmRelease('upgrade');
  assert.equal(upgraded.code, 0, upgraded.stdout + upgraded.stderr);
  const afterUpgrade = await keysInCluster();
  for (const name of SHARED_KEY_FILES) assert.equal(afterUpgrade[name], applied[name], `upgrade keeps ${name}`);

  // Rotating the secret key alone: the value replaces it, the signing key stays; later upgrades keep the new one.
  const newSecretKey = randomBytes(32).toString('base64');
  // (kubectl's apply still co-owns the unchanged key's field since the takeover, hence --force-conflicts.)
  const rotated = await helmRelease('upgrade', '--force-conflicts', '--set', `secrets.secretKey=${newSecretKey}`);
  assert.equal(rotated.code, 0, rotated.stdout + rotated.stderr);
  const afterRotation = await keysInCluster();
  assert.equal(Buffer.from(afterRotation['session-encryption.key']!, 'base64').toString(), newSecretKey);
  assert.equal(afterRotation[SIGNING_KEY_FILE], applied[SIGNING_KEY_FILE]);
  const later = await helmRelease('upgrade');
  assert.equal(later.code, 0, later.stdout + later.stderr);
  assert.deepEqual(await keysInCluster(), afterRotation);
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
