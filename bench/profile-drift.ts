/**
 * How long a hand-widened profile stays widened: the window from an edit of ClusterRole `kubevisa:profile:viewer`
 * (cluster-admin adds `secrets get`) to the reconciler's repair, p50/p99 over N edits, on a real control plane with
 * the real server. Baseline measured in the same run, the same way: the window from deleting a visa's RoleBinding
 * to the reconciler re-creating it (the repair path that existed before). Both sides are timed from the moment
 * kube-apiserver answered the edit to the first read that shows the repair (reads every 5 ms), so each window
 * includes up to ~5 ms of polling.
 * Run: node bench/profile-drift.ts [--edits 30] [--json FILE]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadKubeConfig } from '../src/cluster/kubeconfig.ts';
import { kubernetesStatusOf, makeApis } from '../src/cluster/transport.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv } from '../test/support/kubevisa-env.ts';

const { values } = parseArgs({
  options: { edits: { type: 'string', default: '30' }, json: { type: 'string' } },
});
const EDITS = Math.max(1, Math.min(200, Number(values.edits)));
/** Longest wait for one repair before the run is abandoned, in ms. */
const REPAIR_DEADLINE_MS = 15_000;
const POLL_MS = 5;
const ROLE = 'kubevisa:profile:viewer';
const NAMESPACE = 'b-drift';

const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
const round = (ms: number) => Math.round(ms * 10) / 10;

async function until(what: string, check: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check()) return performance.now();
    if (performance.now() - started > REPAIR_DEADLINE_MS)
      throw new Error(`not repaired in ${REPAIR_DEADLINE_MS} ms: ${what}`);
    await sleep(POLL_MS);
  }
}

function summary(windows: number[]) {
  const sorted = [...windows].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1)!),
  };
}

async function main() {
  log('starting control plane, IdP and server');
  const env = await startKubevisaEnv({ autoApproval: false });
  try {
    await env.kOk(['create', 'namespace', NAMESPACE]);
    await env.startInProcess();
    const admin = (await loginAs(env.serverUrl, people.sam)).token;
    const approver = (await loginAs(env.serverUrl, people.ann)).token;
    const cora = (await loginAs(env.serverUrl, people.cora)).token;
    const call = (method: string, path: string, token: string, body?: unknown) =>
      api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
    const created = await call('POST', '/api/v1/engagements', admin, {
      name: 'bench',
      vendor: 'Bench',
      contractors: [people.cora.email],
      sponsor: people.sam.email,
      endsAt: inDays(5),
      ceiling: { clusters: [CLUSTER], namespacePatterns: [NAMESPACE], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    if (created.status !== 201) throw new Error(JSON.stringify(created.body));
    const requested = await call('POST', '/api/v1/visas', cora, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: [NAMESPACE],
      duration: '2h',
      reason: 'bench',
    });
    const visaId = String(requested.body.id);
    await call('POST', `/api/v1/visas/${visaId}/approve`, approver, {});
    const binding = `kubevisa-${visaId}`;

    // The cluster-admin's own client, in this process, so an edit's time is when kube-apiserver answered it.
    const rbac = makeApis(loadKubeConfig({ kubeconfigPath: env.cp.adminKubeconfig }, CLUSTER), 10_000).rbac;
    const bindingExists = async () => {
      try {
        await rbac.readNamespacedRoleBinding({ namespace: NAMESPACE, name: binding });
        return true;
      } catch (error) {
        if (kubernetesStatusOf(error)?.code === 404) return false;
        throw error;
      }
    };
    const grantsSecrets = async () =>
      (await rbac.readClusterRole({ name: ROLE })).rules?.some((rule) => rule.resources?.includes('secrets')) ?? false;
    await until('the visa binding exists', bindingExists);

    const baseline: number[] = [];
    const profile: number[] = [];
    for (let i = 0; i < EDITS; i++) {
      // Baseline: a visa's RoleBinding deleted by someone else, re-created by the reconciler.
      await rbac.deleteNamespacedRoleBinding({ namespace: NAMESPACE, name: binding });
      const deletedAt = performance.now();
      baseline.push((await until('the binding is back', bindingExists)) - deletedAt);

      // The profile widened by hand, put back by the reconciler.
      const role = await rbac.readClusterRole({ name: ROLE });
      await rbac.replaceClusterRole({
        name: ROLE,
        body: { ...role, rules: [...(role.rules ?? []), { apiGroups: [''], resources: ['secrets'], verbs: ['get'] }] },
      });
      const editedAt = performance.now();
      profile.push((await until('the widening is undone', async () => !(await grantsSecrets()))) - editedAt);
      // Let the reconciler's own pass (kicked by its repair's watch event) finish before the next edit.
      await env.server!.reconciler.whenSettled(CLUSTER);
    }
    const repairs = await env.server!.store.listAudit({ action: 'cluster.drift.repaired', limit: 10_000 });
    const results = {
      edits: EDITS,
      profileEditToRepairMs: summary(profile),
      baselineBindingDeleteToRepairMs: summary(baseline),
      ratioP50: round(
        percentile(
          [...profile].sort((a, b) => a - b),
          50,
        ) /
          percentile(
            [...baseline].sort((a, b) => a - b),
            50,
          ),
      ),
      auditedRepairs: repairs.filter((event) => event.details['name'] === ROLE).length,
    };
    log(
      `profile edit → repair: p50 ${results.profileEditToRepairMs.p50} ms, p99 ${results.profileEditToRepairMs.p99} ms; ` +
        `baseline binding delete → repair: p50 ${results.baselineBindingDeleteToRepairMs.p50} ms, p99 ${results.baselineBindingDeleteToRepairMs.p99} ms`,
    );
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
  } finally {
    await env.stop();
  }
}

await main();
