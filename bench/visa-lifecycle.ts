/**
 * Visa lifecycle timings on a real control plane, with the real server and kubectl:
 *  - approval → first successful `kubectl get pods` (median and max of N),
 *  - expiry lateness p50/p99 over visas with staggered deadlines, at two scales (default 200 visas, then 2,000
 *    visas over 200 namespaces): RoleBinding deleted − notAfter as the reconciler recorded it, and as the cluster
 *    shows it (a watch on kubevisa's RoleBindings: when the DELETED event arrived − notAfter).
 * Run: node bench/visa-lifecycle.ts [--small 200] [--large 2000] [--namespaces 200] [--approvals 10] [--json FILE]
 *        [--store sqlite|postgres]
 * `--store postgres` runs the server on a throwaway database of the test PostgreSQL; `--approvals 0` or `--small 0`
 * skips that part (bench/store-engines.ts runs the 2,000-visa expiry on both engines).
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { parseArgs } from 'node:util';
import type { ControlPlane } from '../src/dev/cluster/control-plane.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  type KubevisaEnv,
  type TestPerson,
} from '../test/support/kubevisa-env.ts';
import { kubectl } from '../test/support/kubectl.ts';

const { values } = parseArgs({
  options: {
    small: { type: 'string', default: '200' },
    large: { type: 'string', default: '2000' },
    namespaces: { type: 'string', default: '200' },
    approvals: { type: 'string', default: '10' },
    store: { type: 'string', default: 'sqlite' },
    json: { type: 'string' },
  },
});
if (values.store !== 'sqlite' && values.store !== 'postgres') {
  throw new Error(`--store must be sqlite or postgres, not '${values.store}'`);
}
const engine: 'sqlite' | 'postgres' = values.store;

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

async function main() {
  log('starting control plane, IdP and server');
  const env = await startKubevisaEnv({ autoApproval: false, store: engine });
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
    if (Number(values.approvals) > 0) await approvalRun(env, call, cora, approver, admin, results);

    // 2. Expiry lateness at two scales.
    for (const [label, count] of [
      ['small', Number(values.small)],
      ['large', Number(values.large)],
    ] as const) {
      if (count > 0)
        results[`expiry_${label}`] = await expiryRun(
          env,
          server.store,
          renewing(env.serverUrl, people.cora, cora),
          renewing(env.serverUrl, people.ann, approver),
          count,
          namespaceCount,
        );
    }
  } finally {
    await env.stop();
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
}

async function approvalRun(
  env: KubevisaEnv,
  call: (method: string, path: string, token: string, body?: unknown) => ReturnType<typeof api>,
  cora: string,
  approver: string,
  admin: string,
  results: Record<string, unknown>,
) {
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
}

/**
 * The person's access token, logged in again once it is 4 minutes old: access tokens live 10 minutes, and granting
 * 10,000 visas on a busy machine takes longer.
 */
function renewing(serverUrl: string, person: TestPerson, first: string): () => Promise<string> {
  let token = first;
  let since = performance.now();
  let renewal: Promise<string> | undefined;
  return async () => {
    if (performance.now() - since < 240_000) return token;
    renewal ??= loginAs(serverUrl, person).then((session) => {
      token = session.token;
      since = performance.now();
      renewal = undefined;
      return token;
    });
    return renewal;
  };
}

async function expiryRun(
  env: KubevisaEnv,
  store: import('../src/store/store.ts').Store,
  cora: () => Promise<string>,
  approver: () => Promise<string>,
  count: number,
  namespaceCount: number,
) {
  const call = (method: string, path: string, token: string, body?: unknown) =>
    api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
  log(`expiry: requesting and approving ${count} visas over ${Math.min(count, namespaceCount)} namespaces`);
  const deletions = watchRoleBindingDeletions(env.cp);
  const ids: string[] = [];
  const notAfter = new Map<string, number>();
  const setupStart = performance.now();
  // Deadlines spread over 60 s after all grants are in place, so expiries overlap with nothing but each other.
  const grantWindowSeconds = Math.ceil(count / 25) + 20;
  // Requests and approvals from a few clients at once, as people would send them.
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = next++; i < count; i = next++) {
        const duration = `${grantWindowSeconds + (i % 60)}s`;
        const requested = await call('POST', '/api/v1/visas', await cora(), {
          profile: 'viewer',
          cluster: CLUSTER,
          namespaces: [`b-${i % namespaceCount}`],
          duration,
          reason: 'bench',
        });
        if (requested.status !== 201) throw new Error(JSON.stringify(requested.body));
        const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, await approver(), {});
        if (approved.status !== 200) throw new Error(JSON.stringify(approved.body));
        ids.push(String(requested.body.id));
        notAfter.set(String(requested.body.id), Date.parse(String(approved.body.notAfter)));
      }
    }),
  );
  const setupSeconds = (performance.now() - setupStart) / 1000;
  log(
    `expiry: ${count} visas approved in ${setupSeconds.toFixed(1)} s (deadlines from ${grantWindowSeconds} s); waiting for their RoleBindings to go`,
  );
  if (setupSeconds > grantWindowSeconds) {
    log(`expiry: WARNING the first deadlines passed while visas were still being granted`);
  }
  const idSet = new Set(ids);
  const deadline = Date.now() + (grantWindowSeconds + 60 + 120) * 1000;
  // When each visa's RoleBinding deletion was recorded (the first one), read on from where the last poll stopped.
  const recorded = new Map<string, number>();
  const deletionEvents = auditReader(store, 'cluster.rolebinding.delete');
  while (Date.now() < deadline) {
    await deletionEvents((e) => {
      if (e.visaId && idSet.has(e.visaId) && !recorded.has(e.visaId)) recorded.set(e.visaId, e.at);
    });
    if (recorded.size === count && ids.every((id) => deletions.seen.has(id))) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  deletions.stop();
  const expired = new Set((await store.listVisas({ state: 'expired', ids })).map((v) => v.id));
  const lateness = [...recorded].filter(([id]) => expired.has(id)).map(([id, at]) => at - notAfter.get(id)!);
  const created = new Set<string>();
  await auditReader(
    store,
    'cluster.rolebinding.create',
  )((e) => {
    if (e.visaId && idSet.has(e.visaId)) created.add(e.visaId);
  });
  const createdCount = created.size;
  lateness.sort((a, b) => a - b);
  const clusterLateness = ids
    .filter((id) => deletions.seen.has(id))
    .map((id) => deletions.seen.get(id)! - notAfter.get(id)!)
    .sort((a, b) => a - b);
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
    clusterDeletionsObserved: clusterLateness.length,
    clusterLatenessMs: {
      p50: round(percentile(clusterLateness, 50)),
      p99: round(percentile(clusterLateness, 99)),
      max: round(clusterLateness.at(-1) ?? NaN),
    },
  };
  log(
    `expiry (${count} visas): lateness as recorded p50 ${summary.latenessMs.p50} ms, p99 ${summary.latenessMs.p99} ms; ` +
      `as the cluster's watch saw it p50 ${summary.clusterLatenessMs.p50} ms, p99 ${summary.clusterLatenessMs.p99} ms, ` +
      `max ${summary.clusterLatenessMs.max} ms (${clusterLateness.length} of ${count})`,
  );
  return summary;
}

/**
 * Reads the audit events of one action page by page (the store returns at most 10,000 at a time); each call goes on
 * from the last event the previous one saw.
 */
function auditReader(store: import('../src/store/store.ts').Store, action: string) {
  let afterSeq = 0;
  return async (visit: (event: import('../src/store/store.ts').AuditEvent) => void) => {
    for (;;) {
      const page = await store.listAudit({ action, afterSeq, limit: 10_000 });
      page.forEach(visit);
      if (page.length > 0) afterSeq = page.at(-1)!.seq;
      if (page.length < 10_000) return;
    }
  };
}

/**
 * Watches kubevisa's RoleBindings at kube-apiserver as cluster admin and notes when each visa's binding was
 * deleted (the arrival of the DELETED event, by the visa label). Resumes from the last resourceVersion when the
 * server ends the watch.
 */
function watchRoleBindingDeletions(cp: ControlPlane): { seen: Map<string, number>; stop: () => void } {
  const seen = new Map<string, number>();
  const tls = {
    ca: readFileSync(cp.caCertFile),
    cert: readFileSync(cp.adminCert.certFile),
    key: readFileSync(cp.adminCert.keyFile),
  };
  let stopped = false;
  let current: { destroy: () => void } | undefined;
  let resourceVersion = '';
  const open = () => {
    if (stopped) return;
    const query = new URLSearchParams({
      watch: 'true',
      labelSelector: 'app.kubernetes.io/managed-by=kubevisa',
      timeoutSeconds: '600',
      ...(resourceVersion === '' ? {} : { resourceVersion }),
    });
    const req = httpsRequest(
      `${cp.apiServerUrl}/apis/rbac.authorization.k8s.io/v1/rolebindings?${query}`,
      tls,
      (res) => {
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
            const line = buffered.slice(0, end);
            buffered = buffered.slice(end + 1);
            if (line.trim() === '') continue;
            const event = JSON.parse(line) as {
              type: string;
              object: { metadata: { resourceVersion?: string; labels?: Record<string, string> } };
            };
            // The resourceVersion is too old to resume from (410): start over (deletions in the gap are missed).
            if (event.type === 'ERROR') {
              resourceVersion = '';
              continue;
            }
            if (event.object.metadata.resourceVersion) resourceVersion = event.object.metadata.resourceVersion;
            const visaId = event.object.metadata.labels?.['kubevisa.io/visa'];
            if (event.type === 'DELETED' && visaId !== undefined && !seen.has(visaId)) seen.set(visaId, Date.now());
          }
        });
        res.on('end', () => setTimeout(open, 100));
      },
    );
    req.on('error', () => setTimeout(open, 500));
    req.end();
    current = req;
  };
  open();
  return {
    seen,
    stop: () => {
      stopped = true;
      current?.destroy();
    },
  };
}

const round = (n: number) => Math.round(n * 10) / 10;

await main();
