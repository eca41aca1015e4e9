/**
 * An authenticated contractor's request latency through the gateway with and without a flood of anonymous requests
 * at the same gateway, in one run: p50 and p99 of GET one ConfigMap (kubectl-like headers, one keep-alive
 * connection, paced), first without the flood, then while a worker thread floods the gateway from another loopback
 * address (raw HTTP/1.1 pipelined on several TLS connections, no or a bad token), then without it again; the ratios
 * against the first run, the flood's rate and how it was answered, and how much the audit trail grew.
 * The server runs as its own process, so neither client's event loop is the gateway's.
 * Run: node bench/gateway-flood.ts [--requests 1500] [--rate 100] [--connections 8] [--json FILE]
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { openStore } from '../src/store/open.ts';
import { startFlood, type FloodOptions, type FloodResult } from '../test/support/gateway-flood.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  startServerProcess,
  waitForExit,
} from '../test/support/kubevisa-env.ts';

const KUBECTL_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json';
const FLOOD_FROM = '127.0.0.2';
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

/** The flood, in a thread of its own until the main thread posts 'stop'. */
function floodThread(): void {
  const flood = startFlood(workerData as FloodOptions);
  parentPort!.on('message', () => flood.stop());
  void flood.done.then(
    (result) => parentPort!.postMessage({ ok: true, result }),
    (error: Error) => parentPort!.postMessage({ ok: false, message: error.message }),
  );
}

async function main() {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '1500' },
      rate: { type: 'string', default: '100' },
      connections: { type: 'string', default: '8' },
      json: { type: 'string' },
    },
  });
  const requests = Number(values.requests);
  const gapMs = 1000 / Number(values.rate);
  log('starting control plane and IdP');
  const env = await startKubevisaEnv({
    tls: true,
    autoApproval: false,
    // The contractor's own pace must not meet the per-person limit; the address limits stay at their defaults,
    // since they are part of what is measured.
    extraConfig: { gateway: { ratePerSecond: 100_000, burst: 100_000 } },
  });
  let server: Awaited<ReturnType<typeof startServerProcess>> | undefined;
  try {
    await env.kOk(['create', 'namespace', 'bench-flood']);
    await env.kOk(['create', 'configmap', 'one', '-n', 'bench-flood', '--from-literal=a=b']);
    server = await startServerProcess(env);
    const admin = (await loginAs(env.serverUrl, people.sam)).token;
    const approver = (await loginAs(env.serverUrl, people.ann)).token;
    const cora = await loginAs(env.serverUrl, people.cora);
    const call = (method: string, path: string, token: string, body?: unknown) =>
      api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
    await call('POST', '/api/v1/engagements', admin, {
      name: 'bench',
      vendor: 'Bench',
      contractors: [people.cora.email],
      sponsor: people.sam.email,
      endsAt: inDays(3),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['bench-*'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    const requested = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['bench-flood'],
      duration: '2h',
      reason: 'bench',
    });
    const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
    if (approved.status !== 200) throw new Error(JSON.stringify(approved.body));
    await new Promise((r) => setTimeout(r, 2000));

    const ca = readFileSync(env.config.tls!.caFile!);
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca });
    const url = `${env.serverUrl}/clusters/${CLUSTER}/api/v1/namespaces/bench-flood/configmaps/one`;
    const get = () =>
      new Promise<{ ms: number; status: number }>((resolve, reject) => {
        const t0 = performance.now();
        const req = httpsRequest(
          url,
          {
            agent,
            headers: { authorization: `Bearer ${cora.token}`, accept: KUBECTL_ACCEPT, 'accept-encoding': 'gzip' },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve({ ms: performance.now() - t0, status: res.statusCode ?? 0 }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const measure = async (label: string) => {
      const times: number[] = [];
      const statuses: Record<number, number> = {};
      for (let i = 0; i < 50; i++) await get();
      for (let i = 0; i < requests; i++) {
        const started = performance.now();
        const { ms, status } = await get();
        statuses[status] = (statuses[status] ?? 0) + 1;
        times.push(ms);
        const wait = gapMs - (performance.now() - started);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      times.sort((a, b) => a - b);
      const figures = { p50ms: round(percentile(times, 50)), p99ms: round(percentile(times, 99)), statuses };
      log(`${label}: p50 ${figures.p50ms} ms p99 ${figures.p99ms} ms ${JSON.stringify(statuses)}`);
      return figures;
    };

    const quiet = await measure('without the flood');
    log(`flooding from ${FLOOD_FROM} on ${values.connections} connections`);
    const flood = new Worker(new URL(import.meta.url), {
      workerData: {
        port: env.serverPort,
        ca,
        path: `/clusters/${CLUSTER}/api/v1/namespaces/bench-flood/configmaps`,
        connections: Number(values.connections),
        from: FLOOD_FROM,
        timeoutMs: 3_600_000,
      } satisfies FloodOptions,
    });
    const floodDone = new Promise<FloodResult>((resolve, reject) =>
      flood.once('message', (reply: { ok: true; result: FloodResult } | { ok: false; message: string }) =>
        reply.ok ? resolve(reply.result) : reject(new Error(reply.message)),
      ),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const flooded = await measure('during the flood');
    flood.postMessage('stop');
    const floodResult = await floodDone;
    await flood.terminate();
    const after = await measure('after the flood');
    agent.destroy();

    server.kill('SIGTERM');
    await waitForExit(server);
    server = undefined;
    const store = await openStore(env.config.store, { dataDir: env.config.dataDir });
    let floodEvents: number;
    try {
      floodEvents = (await store.listAudit({ limit: 10_000 })).filter((e) => e.source?.address === FLOOD_FROM).length;
    } finally {
      await store.close();
    }
    const results = {
      contractor: { requests, ratePerSecond: Number(values.rate), quiet, flooded, after },
      p50Ratio: round(flooded.p50ms / quiet.p50ms),
      p99Ratio: round(flooded.p99ms / quiet.p99ms),
      flood: {
        requests: floodResult.answered,
        seconds: round(floodResult.ms / 1000, 1),
        perSecond: Math.round(floodResult.answered / (floodResult.ms / 1000)),
        statuses: floodResult.statuses,
        auditEvents: floodEvents,
      },
    };
    log(
      `flood: ${results.flood.requests} anonymous requests in ${results.flood.seconds} s (${results.flood.perSecond}/s) ${JSON.stringify(floodResult.statuses)}; ${floodEvents} audit events`,
    );
    log(`contractor latency under the flood: p50 ×${results.p50Ratio}, p99 ×${results.p99Ratio}`);
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
  } finally {
    if (server) {
      server.kill('SIGTERM');
      await waitForExit(server);
    }
    await env.stop();
  }
}

if (isMainThread) await main();
else floodThread();
