/**
 * Visa lifecycle timings on a real control plane, with the real server and kubectl:
 *  - approval → first successful `kubectl get pods` (median and max of N),
 *  - expiry lateness (RoleBinding deleted − notAfter, as recorded by the reconciler) p50/p99 over visas with
 *    staggered deadlines, at two scales (default 200 visas, then 2,000 visas over 200 namespaces).
 * Run: node bench/visa-lifecycle.ts [--small 200] [--large 2000] [--namespaces 200] [--json FILE]
 */
import { parseArgs } from 'node:util';
import { writeFile } from 'node:fs/promises';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  type KubevisaEnv,
} from '../test/support/kubevisa-env.ts';
import { kubectl } from '../test/support/kubectl.ts';

const { values } = parseArgs({
  options: {
    small: { type: 'string', default: '200' },
    large: { type: 'string', default: '2000' },
    namespaces: { type: 'string', default: '200' },
    approvals: { type: 'string', default: '10' },
    json: { type: 'string' },
  },
});

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

async function main() {
  log('starting control plane, IdP and server');
  const env = await startKubevisaEnv({ autoApproval: false });
  const results: Record<string, unknown> = {};
  try {
    const namespaceCount = Number(values.namespaces);
    const manifests = Array.from({ length: namespaceCount }, (_, i) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: `b-${i}` },
    }));
    await env.kOk(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [...manifests, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'b-approve' } }],
      }),
    );
    const server = await env.startInProcess();
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
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['b-*'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    if (created.status !== 201) throw new Error(JSON.stringify(created.body));

    // 1. Approval → first successful kubectl get pods.
    const approvalTimes: number[] = [];
    for (let i = 0; i < Number(values.approvals); i++) {
      const requested = await call('POST', '/api/v1/visas', cora, {
        profile: 'viewer',
        cluster: CLUSTER,
        namespaces: ['b-approve'],
        duration: '1h',
        reason: 'bench',
      });
      const t0 = performance.now();
      await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
      const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora);
      const kubeconfig = await env.cp.writeTokenKubeconfig(String(credential.body.token), `bench-${i}`);
      for (;;) {
        const result = await kubectl(env.cp.binaries.kubectl, ['get', 'pods', '-n', 'b-approve'], { kubeconfig });
        if (result.code === 0) break;
        if (performance.now() - t0 > 30_000) throw new Error(`kubectl never succeeded: ${result.stderr}`);
      }
      approvalTimes.push(performance.now() - t0);
      await call('POST', `/api/v1/visas/${String(requested.body.id)}/revoke`, admin, { reason: 'bench' });
    }
    approvalTimes.sort((a, b) => a - b);
    results.approvalToFirstKubectlMs = {
      n: approvalTimes.length,
      median: round(percentile(approvalTimes, 50)),
      max: round(approvalTimes.at(-1)!),
    };
    log(
      `approval → first kubectl get pods: median ${round(percentile(approvalTimes, 50))} ms, max ${round(approvalTimes.at(-1)!)} ms`,
    );

    // 2. Expiry lateness at two scales.
    for (const [label, count] of [
      ['small', Number(values.small)],
      ['large', Number(values.large)],
    ] as const) {
      results[`expiry_${label}`] = await expiryRun(env, server.store, cora, approver, count, namespaceCount);
    }
  } finally {
    await env.stop();
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
}

async function expiryRun(
  env: KubevisaEnv,
  store: import('../src/store/store.ts').Store,
  cora: string,
  approver: string,
  count: number,
  namespaceCount: number,
) {
  const call = (method: string, path: string, token: string, body?: unknown) =>
    api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
  log(`expiry: requesting and approving ${count} visas over ${Math.min(count, namespaceCount)} namespaces`);
  const ids: string[] = [];
  const setupStart = performance.now();
  // Deadlines spread over 60 s after all grants are in place, so expiries overlap with nothing but each other.
  const grantWindowSeconds = Math.ceil(count / 40) + 20;
  for (let i = 0; i < count; i++) {
    const duration = `${grantWindowSeconds + (i % 60)}s`;
    const requested = await call('POST', '/api/v1/visas', cora, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: [`b-${i % namespaceCount}`],
      duration,
      reason: 'bench',
    });
    if (requested.status !== 201) throw new Error(JSON.stringify(requested.body));
    const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
    if (approved.status !== 200) throw new Error(JSON.stringify(approved.body));
    ids.push(String(requested.body.id));
  }
  const setupSeconds = (performance.now() - setupStart) / 1000;
  log(
    `expiry: ${count} visas approved in ${setupSeconds.toFixed(1)} s; waiting for their RoleBindings, then their deadlines`,
  );
  const idSet = new Set(ids);
  const deadline = Date.now() + (grantWindowSeconds + 60 + 120) * 1000;
  let lateness: number[] = [];
  let createdCount = 0;
  while (Date.now() < deadline) {
    const events = await store.listAudit({ action: 'cluster.rolebinding.delete', limit: 10_000 });
    const visas = new Map((await store.listVisas({ state: 'expired' })).map((v) => [v.id, v]));
    lateness = events
      .filter((e) => e.visaId && idSet.has(e.visaId) && visas.has(e.visaId))
      .map((e) => e.at - visas.get(e.visaId!)!.notAfter);
    if (lateness.length === count) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  createdCount = (await store.listAudit({ action: 'cluster.rolebinding.create', limit: 10_000 })).filter(
    (e) => e.visaId && idSet.has(e.visaId),
  ).length;
  lateness.sort((a, b) => a - b);
  const summary = {
    visas: count,
    namespaces: Math.min(count, namespaceCount),
    setupSeconds: Number(setupSeconds.toFixed(1)),
    roleBindingsCreated: createdCount,
    expiriesObserved: lateness.length,
    latenessMs: {
      p50: round(percentile(lateness, 50)),
      p99: round(percentile(lateness, 99)),
      max: round(lateness.at(-1) ?? NaN),
    },
  };
  log(
    `expiry (${count} visas): lateness p50 ${summary.latenessMs.p50} ms, p99 ${summary.latenessMs.p99} ms, max ${summary.latenessMs.max} ms`,
  );
  return summary;
}

const round = (n: number) => Math.round(n * 10) / 10;

await main();
