/**
 * Exposure scan benchmark: the full who-can-do-what matrix (every bound subject × every namespace it is bound in,
 * groups and ClusterRoleBindings included) plus every finding, over a generated cluster with 20k RoleBindings and
 * 2k Roles — goal ≤ 2 s once the objects are listed — compared in the same run with `kubectl auth can-i --list`
 * per subject on a real kube-apiserver.
 *
 *  1. in process: the generated objects, analysed N times (median, min);
 *  2. on the test control plane: the same objects created with kubectl, listed with kubevisa's own credential
 *     (timed), analysed (timed);
 *  3. `kubectl auth can-i --list --as=<subject> -n <namespace>` for a random sample of the matrix's namespaced
 *     rows: time per call, extrapolated to every row (the sample is a sample: said so in the output), and each
 *     sampled row's permissions compared fact by fact with the scan's.
 *
 * Run: node bench/exposure-scan.ts [--bindings 20000] [--roles 2000] [--namespaces 400] [--sample 40] [--runs 5]
 *        [--in-process-only] [--json FILE]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClusterClient } from '../src/cluster/client.ts';
import { installKubevisa } from '../src/cluster/install.ts';
import type { PolicyRule } from '../src/domain/model.ts';
import { startControlPlane } from '../src/dev/cluster/control-plane.ts';
import { analyzeExposure, buildDirectory, type ExposureInput } from '../src/monitor/exposure.ts';
import type { MatrixRow } from '../src/rbac/matrix.ts';
import type { BindingLike, ClusterRoleLike, RbacObjects, RoleLike, SubjectLike } from '../src/rbac/rbac-index.ts';
import { SHIPPED_PROFILES } from '../src/rbac/profiles.ts';
import { canIFacts, compareFacts, permissionFacts } from './exposure-can-i.ts';

const { values } = parseArgs({
  options: {
    bindings: { type: 'string', default: '20000' },
    roles: { type: 'string', default: '2000' },
    namespaces: { type: 'string', default: '400' },
    sample: { type: 'string', default: '40' },
    runs: { type: 'string', default: '5' },
    seed: { type: 'string', default: '6' },
    'in-process-only': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
const BINDINGS = Number(values.bindings);
const ROLES = Number(values.roles);
const NAMESPACES = Number(values.namespaces);

// ——— A deterministic generated cluster ———

function prng(seed: number): () => number {
  // mulberry32: small, fast, reproducible.
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const RULE_MENU: PolicyRule[] = [
  { apiGroups: [''], resources: ['pods', 'pods/log'], verbs: ['get', 'list', 'watch'] },
  {
    apiGroups: [''],
    resources: ['configmaps'],
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list'] },
  { apiGroups: [''], resources: ['services', 'endpoints'], verbs: ['get', 'list', 'watch'] },
  {
    apiGroups: ['apps'],
    resources: ['deployments', 'statefulsets'],
    verbs: ['get', 'list', 'watch', 'update', 'patch'],
  },
  { apiGroups: ['apps'], resources: ['deployments/scale'], verbs: ['update', 'patch'] },
  { apiGroups: ['batch'], resources: ['jobs', 'cronjobs'], verbs: ['get', 'list', 'create', 'delete'] },
  { apiGroups: [''], resources: ['pods/exec', 'pods/attach'], verbs: ['create', 'get'] },
  { apiGroups: [''], resources: ['pods/portforward'], verbs: ['create'] },
  { apiGroups: ['networking.k8s.io'], resources: ['ingresses'], verbs: ['get', 'list', 'watch'] },
  {
    apiGroups: [''],
    resources: ['configmaps'],
    resourceNames: ['app-config', 'feature-flags'],
    verbs: ['get', 'update'],
  },
  { apiGroups: ['rbac.authorization.k8s.io'], resources: ['rolebindings'], verbs: ['get', 'list', 'create'] },
  { apiGroups: ['*'], resources: ['*'], verbs: ['get', 'list'] },
];

function generate(seed: number): { objects: RbacObjects; clusterRoleNames: string[]; namespaces: string[] } {
  const random = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const meta = (name: string, namespace?: string) => ({
    name,
    ...(namespace === undefined ? {} : { namespace }),
    labels: {},
    annotations: {},
  });
  const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `team-${i}`);
  const rulesOf = () => {
    const count = 2 + Math.floor(random() * 6);
    return [...new Set(Array.from({ length: count }, () => pick(RULE_MENU)))].map((rule) => structuredClone(rule));
  };
  const roles: RoleLike[] = Array.from({ length: ROLES }, (_, i) => ({
    metadata: meta(`role-${i}`, namespaces[i % NAMESPACES]),
    rules: rulesOf(),
  }));
  const clusterRoles: ClusterRoleLike[] = Array.from({ length: 50 }, (_, i) => ({
    metadata: meta(`bench-cluster-role-${i}`),
    rules: rulesOf(),
  }));
  const clusterRoleNames = [...clusterRoles.map((r) => r.metadata.name), 'view', 'edit', 'admin'];
  const rolesByNamespace = new Map<string, string[]>();
  for (const role of roles) {
    const list = rolesByNamespace.get(role.metadata.namespace!) ?? [];
    list.push(role.metadata.name);
    rolesByNamespace.set(role.metadata.namespace!, list);
  }
  const users = Array.from({ length: 5000 }, (_, i) => (i % 10 === 0 ? `c${i}@vendor.example` : `u${i}@corp.example`));
  const groups = Array.from({ length: 300 }, (_, i) => `group-${i}`);
  const subject = (namespace: string): SubjectLike => {
    const kind = random();
    if (kind < 0.5) return { kind: 'User', name: pick(users), apiGroup: 'rbac.authorization.k8s.io' };
    if (kind < 0.7) return { kind: 'Group', name: pick(groups), apiGroup: 'rbac.authorization.k8s.io' };
    return { kind: 'ServiceAccount', name: `sa-${Math.floor(random() * 5)}`, namespace };
  };
  const roleBindings: BindingLike[] = Array.from({ length: BINDINGS }, (_, i) => {
    const namespace = namespaces[i % NAMESPACES]!;
    const localRoles = rolesByNamespace.get(namespace) ?? [];
    const toRole = localRoles.length > 0 && random() < 0.7;
    const count = 1 + Math.floor(random() * 3);
    const subjects = [
      ...new Map(
        Array.from({ length: count }, () => subject(namespace)).map((s) => [`${s.kind}/${s.name}`, s]),
      ).values(),
    ];
    return {
      metadata: meta(`binding-${i}`, namespace),
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: toRole ? 'Role' : 'ClusterRole',
        name: toRole ? pick(localRoles) : pick(clusterRoleNames),
      },
      subjects,
    };
  });
  const clusterRoleBindings: BindingLike[] = Array.from({ length: 100 }, (_, i) => ({
    metadata: meta(`bench-crb-${i}`),
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: pick(clusterRoles).metadata.name },
    subjects: [subject('default')],
  }));
  return { objects: { roles, clusterRoles, roleBindings, clusterRoleBindings }, clusterRoleNames, namespaces };
}

const directory = buildDirectory({
  engagements: [{ name: 'vendor', contractors: ['c0@vendor.example'], sponsor: 's@corp.example', status: 'active' }],
  persons: [],
});

function input(objects: RbacObjects): ExposureInput {
  return { cluster: 'bench', objects, tokenSecrets: [], legacyTokenUses: [], directory };
}

function timeScan(objects: RbacObjects, runs: number) {
  const times: number[] = [];
  let last: ReturnType<typeof analyzeExposure> | undefined;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    last = analyzeExposure(input(objects), { withMatrix: true });
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const matrix = last!.matrix!;
  return {
    medianMs: round(times[Math.floor(times.length / 2)]!),
    minMs: round(times[0]!),
    runs,
    subjects: last!.counts.subjects,
    grants: last!.counts.grants,
    matrixRows: matrix.length,
    namespacedRows: matrix.filter((row) => row.namespace !== '').length,
    permissionEntries: matrix.reduce((sum, row) => sum + row.permissions.resources.length, 0),
    findings: last!.findings.length,
    matrix,
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;

function kubectlRun(binary: string, args: string[], kubeconfig: string, input?: string) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(binary, args, {
      env: { ...process.env, KUBECONFIG: kubeconfig },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

function asArgs(row: MatrixRow): string[] {
  const { subject } = row;
  if (subject.kind === 'Group') return ['--as=kubevisa-bench-probe', `--as-group=${subject.name}`];
  return [`--as=${subject.username ?? subject.name}`];
}

async function main() {
  const results: Record<string, unknown> = {
    generated: {
      roleBindings: BINDINGS,
      roles: ROLES,
      namespaces: NAMESPACES,
      clusterRoles: 50,
      clusterRoleBindings: 100,
    },
  };
  const { objects, namespaces } = generate(Number(values.seed));
  log(`generated ${BINDINGS} RoleBindings, ${ROLES} Roles in ${NAMESPACES} namespaces`);
  const inProcess = timeScan(objects, Number(values.runs));
  const { matrix: _generatedMatrix, ...inProcessSummary } = inProcess;
  results['inProcess'] = inProcessSummary;
  log(
    `in process: full matrix + findings in ${inProcess.medianMs} ms (median of ${inProcess.runs}), ${inProcess.matrixRows} rows`,
  );
  if (values['in-process-only']) return finish(results);

  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-bench-exposure-'));
  log('starting the control plane');
  const cp = await startControlPlane();
  try {
    const kubectl = cp.binaries.kubectl;
    const installed = await installKubevisa({
      adminKubeconfigPath: cp.adminKubeconfig,
      clusterName: 'bench',
      profiles: [...SHIPPED_PROFILES],
    });
    const asJson = (items: unknown[]) => JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
    const create = async (items: unknown[]) => {
      const chunks: unknown[][] = [];
      for (let i = 0; i < items.length; i += 2000) chunks.push(items.slice(i, i + 2000));
      // Four kubectl processes at a time: creating is set-up, not what is measured.
      for (let i = 0; i < chunks.length; i += 4) {
        await Promise.all(
          chunks.slice(i, i + 4).map(async (chunk) => {
            const result = await kubectlRun(
              kubectl,
              ['create', '-f', '-', '-o', 'name'],
              cp.adminKubeconfig,
              asJson(chunk),
            );
            if (result.code !== 0) throw new Error(`kubectl create failed: ${result.stderr.slice(0, 500)}`);
          }),
        );
      }
    };
    const createStarted = performance.now();
    await create(namespaces.map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })));
    const typed = (kind: string, apiVersion: string) => (object: object) => ({ apiVersion, kind, ...object });
    const rbac = 'rbac.authorization.k8s.io/v1';
    await create([
      ...objects.clusterRoles.map(typed('ClusterRole', rbac)),
      ...objects.roles.map(typed('Role', rbac)),
      ...objects.roleBindings.map(typed('RoleBinding', rbac)),
      ...objects.clusterRoleBindings.map(typed('ClusterRoleBinding', rbac)),
    ]);
    const createMs = performance.now() - createStarted;
    log(`created every object with kubectl in ${Math.round(createMs / 1000)} s`);

    const client = createClusterClient({
      name: 'bench',
      kubeconfigYaml: installed.kubeconfigYaml,
      requestTimeoutMs: 60_000,
    });
    const listStarted = performance.now();
    const [roles, clusterRoles, roleBindings, clusterRoleBindings] = await Promise.all([
      client.listRoles(),
      client.listClusterRoles(),
      client.listRoleBindings(),
      client.listClusterRoleBindings(),
    ]);
    const listMs = performance.now() - listStarted;
    const listed: RbacObjects = { roles, clusterRoles, roleBindings, clusterRoleBindings };
    log(
      `listed ${roleBindings.length} RoleBindings, ${roles.length} Roles, ${clusterRoles.length} ClusterRoles, ${clusterRoleBindings.length} ClusterRoleBindings with kubevisa's credential in ${Math.round(listMs)} ms`,
    );
    const onCluster = timeScan(listed, Number(values.runs));
    const { matrix, ...onClusterSummary } = onCluster;
    results['cluster'] = {
      listed: {
        roleBindings: roleBindings.length,
        roles: roles.length,
        clusterRoles: clusterRoles.length,
        clusterRoleBindings: clusterRoleBindings.length,
      },
      listMs: round(listMs),
      scan: onClusterSummary,
    };
    log(
      `listed objects: full matrix + findings in ${onCluster.medianMs} ms (median of ${onCluster.runs}), ${onCluster.matrixRows} rows`,
    );

    // kubectl auth can-i --list on a random sample of the namespaced rows of the matrix.
    const random = prng(Number(values.seed) + 1);
    const candidates = matrix.filter((row) => row.namespace !== '');
    const sample: MatrixRow[] = [];
    const wanted = Math.min(Number(values.sample), candidates.length);
    const taken = new Set<number>();
    while (sample.length < wanted) {
      const index = Math.floor(random() * candidates.length);
      if (taken.has(index)) continue;
      taken.add(index);
      sample.push(candidates[index]!);
    }
    // One call first so kubectl's discovery cache is warm for every timed call.
    await kubectlRun(kubectl, ['auth', 'can-i', '--list', '-n', 'default'], cp.adminKubeconfig);
    const callMs: number[] = [];
    let mismatches = 0;
    const mismatchExamples: unknown[] = [];
    for (const row of sample) {
      const started = performance.now();
      const answer = await kubectlRun(
        kubectl,
        ['auth', 'can-i', '--list', ...asArgs(row), '-n', row.namespace],
        cp.adminKubeconfig,
      );
      callMs.push(performance.now() - started);
      if (answer.code !== 0) throw new Error(`kubectl auth can-i failed: ${answer.stderr}`);
      const difference = compareFacts(canIFacts(answer.stdout), permissionFacts(row.permissions));
      if (difference.onlyKubectl.length > 0 || difference.onlyScan.length > 0) {
        mismatches++;
        if (mismatchExamples.length < 3)
          mismatchExamples.push({ subject: row.subject.key, namespace: row.namespace, ...difference });
      }
    }
    callMs.sort((a, b) => a - b);
    const meanMs = callMs.reduce((a, b) => a + b, 0) / callMs.length;
    const extrapolatedS = (meanMs * candidates.length) / 1000;
    results['kubectlCanI'] = {
      sampled: sample.length,
      namespacedRows: candidates.length,
      meanMsPerCall: round(meanMs),
      medianMsPerCall: round(callMs[Math.floor(callMs.length / 2)]!),
      extrapolatedSecondsForEveryRow: Math.round(extrapolatedS),
      note: `extrapolated: ${sample.length} sampled calls × ${candidates.length} namespaced rows`,
      mismatches,
      ...(mismatchExamples.length > 0 ? { mismatchExamples } : {}),
    };
    results['ratio'] = {
      scanVsKubectlExtrapolated: `${Math.round((extrapolatedS * 1000) / onCluster.medianMs)}× faster`,
    };
    log(
      `kubectl auth can-i --list: ${round(meanMs)} ms per call (${sample.length} sampled); every one of the ${candidates.length} namespaced rows would take ~${Math.round(extrapolatedS)} s (extrapolated); ${mismatches} sampled row(s) disagree with the scan`,
    );
  } finally {
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return finish(results);
}

async function finish(results: Record<string, unknown>) {
  const text = JSON.stringify(results, null, 2);
  process.stdout.write(`${text}\n`);
  if (values.json !== undefined) await writeFile(values.json, text);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
