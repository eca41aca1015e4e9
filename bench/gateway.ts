/**
 * Gateway throughput and latency against direct kube-apiserver access and `kubectl proxy`, in one run, on the
 * same control plane and object set, with the same load generator (wrk) and kubectl-like headers; CPU per
 * request of the gateway process and of kube-apiserver; revocation latency (revoke → first refused request,
 * → open watch closed, → exec / port-forward closed); memory of the gateway with 2,000 open watches.
 * Run: node bench/gateway.ts [--duration 8] [--connections 1,8,32] [--trials 100] [--watches 2000] [--json FILE]
 *        [--store sqlite|postgres] [--parts throughput,revocation,streams,memory]
 * `--store postgres` runs the server on a throwaway database of the test PostgreSQL; the throughput rows then also
 * give the CPU its database sessions spent per request (bench/store-engines.ts compares both engines).
 * Needs wrk (Debian: apt-get install wrk).
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request as httpsRequest, Agent } from 'node:https';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePorts } from '../src/dev/cluster/control-plane.ts';
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
import { kubectlBackground } from '../test/support/kubectl.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '1,8,32' },
    trials: { type: 'string', default: '100' },
    streamTrials: { type: 'string', default: '20' },
    watches: { type: 'string', default: '2000' },
    store: { type: 'string', default: 'sqlite' },
    parts: { type: 'string', default: 'throughput,revocation,streams,memory' },
    json: { type: 'string' },
  },
});
const PARTS = ['throughput', 'revocation', 'streams', 'memory'];
const parts = new Set(values.parts!.split(','));
for (const part of parts) {
  if (!PARTS.includes(part)) throw new Error(`--parts: unknown part '${part}'; parts: ${PARTS.join(', ')}`);
}
if (values.store !== 'sqlite' && values.store !== 'postgres') {
  throw new Error(`--store must be sqlite or postgres, not '${values.store}'`);
}
const store: 'sqlite' | 'postgres' = values.store;
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;
const KUBECTL_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json';

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100;
}
/**
 * CPU spent by the database sessions of `url` (PostgreSQL's backends for it), summed; call twice and subtract.
 * Backends gone between the calls are missed, so the pool keeps its connections open for this.
 */
async function databaseCpuMs(url: string | undefined): Promise<Map<number, number>> {
  const cpu = new Map<number, number>();
  if (url === undefined) return cpu;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    for (const { pid } of rows) {
      try {
        cpu.set(pid, cpuMs(pid));
      } catch {
        // Ended meanwhile.
      }
    }
  } finally {
    await client.end();
  }
  return cpu;
}
function cpuSpent(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}
function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) / 1024;
}

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
}
function parseWrk(out: string): WrkResult {
  const ms = (s: string) => {
    const m = /([\d.]+)(us|ms|s)/.exec(s)!;
    return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
  };
  const line = (label: string) => new RegExp(`^\\s+${label}\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '0ms';
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)![1]),
    p50: ms(line('50%')),
    p99: ms(line('99%')),
    requests: Number(/(\d+) requests in/.exec(out)![1]),
    errors:
      (errors ? Number(errors[1]) : 0) + (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  };
}

async function wrk(
  url: string,
  connections: number,
  seconds: number,
  headers: Record<string, string>,
): Promise<WrkResult> {
  const args = ['-t', String(Math.min(2, connections)), '-c', String(connections), '-d', `${seconds}s`, '--latency'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const { stdout } = await run('wrk', args, { maxBuffer: 1 << 20 });
  return parseWrk(stdout);
}

/** A watch through the gateway: resolves `opened` when the response starts and `closed` (a time) when it ends. */
function openWatch(url: string, token: string, ca: Buffer) {
  let markOpened: () => void = () => {};
  const opened = new Promise<void>((resolve) => (markOpened = resolve));
  const closed = new Promise<number>((resolve) => {
    const req = httpsRequest(url, { agent: false, ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      markOpened();
      res.on('data', () => {});
      res.on('close', () => resolve(performance.now()));
    });
    req.on('error', () => {
      markOpened();
      resolve(performance.now());
    });
    req.end();
  });
  return { opened, closed };
}

async function main() {
  await run('wrk', ['--version']).catch((error: { code?: string; stdout?: string }) => {
    if (error.code === 'ENOENT') throw new Error('wrk is not installed: apt-get install wrk');
  });
  log('starting control plane and IdP');
  const env = await startKubevisaEnv({
    tls: true,
    autoApproval: false,
    store,
    // wrk sends from one address at thousands of requests a second: neither limit may be what is measured.
    extraConfig: {
      gateway: {
        ratePerSecond: 1_000_000,
        burst: 1_000_000,
        addressRatePerSecond: 1_000_000,
        addressBurst: 1_000_000,
      },
    },
  });
  const results: Record<string, unknown> = {};
  /** What failed while being measured: reported with the results, and the run exits 1. */
  const failures: string[] = [];
  let server: Awaited<ReturnType<typeof startServerProcess>> | undefined;
  const children: { kill: (s?: NodeJS.Signals) => void }[] = [];
  try {
    log('creating 500 ConfigMaps');
    await env.kOk(['create', 'namespace', 'bench-gw']);
    const items = Array.from({ length: 500 }, (_, i) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `cm-${i}`, namespace: 'bench-gw', labels: { bench: 'gateway', index: String(i) } },
      data: { payload: 'x'.repeat(900) },
    }));
    await env.kOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
    await env.kOk(['create', 'configmap', 'one', '-n', 'bench-gw', '--from-literal=a=b']);
    server = await startServerProcess(env);
    const serverPid = server.pid!;
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
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['bench-*'], profiles: ['viewer', 'debugger'] },
      maxVisaDuration: '8h',
    });
    const grant = async (profile: string, namespaces: string[]) => {
      const requested = await call('POST', '/api/v1/visas', cora.token, {
        profile,
        cluster: CLUSTER,
        namespaces,
        duration: '2h',
        reason: 'bench',
      });
      const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
      if (approved.status !== 200) throw new Error(JSON.stringify(approved.body));
      return String(requested.body.id);
    };
    await grant('viewer', ['bench-gw']);
    await new Promise((r) => setTimeout(r, 1500));
    const direct = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora.token);
    const saToken = String(direct.body.token);
    const kubeconfig = await env.cp.writeTokenKubeconfig(saToken, 'bench-direct');
    const [proxyPort] = await freePorts(1);
    const proxy = spawn(
      env.cp.binaries.kubectl,
      ['proxy', `--port=${proxyPort}`, '--address=127.0.0.1', `--kubeconfig=${kubeconfig}`],
      { stdio: 'ignore' },
    );
    children.push(proxy);
    await new Promise((r) => setTimeout(r, 1500));

    const one = '/api/v1/namespaces/bench-gw/configmaps/one';
    const list = '/api/v1/namespaces/bench-gw/configmaps?labelSelector=bench%3Dgateway';
    const targets = {
      direct: { base: env.cp.apiServerUrl, headers: { authorization: `Bearer ${saToken}` } },
      kubectlProxy: { base: `http://127.0.0.1:${proxyPort}`, headers: {} },
      gateway: { base: `${env.serverUrl}/clusters/${CLUSTER}`, headers: { authorization: `Bearer ${cora.token}` } },
    };
    const apiserverPid = env.cp.pidOf('kube-apiserver')!;
    const proxyPid = proxy.pid!;
    const seconds = Number(values.duration);
    if (parts.has('throughput')) {
      const throughput: Record<string, unknown>[] = [];
      for (const [endpointName, path] of [
        ['GET one ConfigMap', one],
        ['LIST 500 ConfigMaps', list],
      ] as const) {
        for (const connections of values.connections!.split(',').map(Number)) {
          const row: Record<string, unknown> = { endpoint: endpointName, connections };
          for (const [name, target] of Object.entries(targets)) {
            const proxyCpu = name === 'kubectlProxy' ? cpuMs(proxyPid) : 0;
            const cpuBefore = { apiserver: cpuMs(apiserverPid), gateway: cpuMs(serverPid) };
            const databaseBefore =
              name === 'gateway' ? await databaseCpuMs(env.postgresUrl) : new Map<number, number>();
            const result = await wrk(target.base + path, connections, seconds, {
              ...target.headers,
              accept: KUBECTL_ACCEPT,
              'accept-encoding': 'gzip',
            });
            const apiserverCpu = cpuMs(apiserverPid) - cpuBefore.apiserver;
            const databaseCpu =
              name === 'gateway' && env.postgresUrl !== undefined
                ? cpuSpent(databaseBefore, await databaseCpuMs(env.postgresUrl))
                : undefined;
            const frontCpu =
              name === 'gateway'
                ? cpuMs(serverPid) - cpuBefore.gateway
                : name === 'kubectlProxy'
                  ? cpuMs(proxyPid) - proxyCpu
                  : 0;
            row[name] = {
              rps: round(result.rps),
              p50ms: round(result.p50, 2),
              p99ms: round(result.p99, 2),
              errors: result.errors,
              apiserverCpuMsPerReq: round(apiserverCpu / result.requests, 3),
              ...(name !== 'direct' ? { frontCpuMsPerReq: round(frontCpu / result.requests, 3) } : {}),
              ...(databaseCpu !== undefined ? { databaseCpuMsPerReq: round(databaseCpu / result.requests, 3) } : {}),
            };
            log(
              `${endpointName} c=${connections} ${name}: ${round(result.rps)} req/s p50 ${round(result.p50, 2)} ms p99 ${round(result.p99, 2)} ms errors ${result.errors}`,
            );
            // Requests per second of failures (non-2xx answers, socket errors) would be a measure of the refusal path.
            if (result.errors > 0) {
              failures.push(
                `${endpointName} c=${connections} ${name}: ${result.errors} of ${result.requests} requests failed`,
              );
            }
          }
          const d = row.direct as { rps: number; p99ms: number };
          const g = row.gateway as { rps: number; p99ms: number };
          const k = row.kubectlProxy as { rps: number };
          row.gatewayVsDirect = round(g.rps / d.rps, 2);
          row.gatewayVsKubectlProxy = round(g.rps / k.rps, 2);
          row.addedP99ms = round(g.p99ms - d.p99ms, 2);
          throughput.push(row);
        }
      }
      results.throughput = throughput;
    }

    const agent = new Agent({ keepAlive: true, ca: readFileSync(env.config.tls!.caFile!) });
    if (parts.has('revocation')) {
      // Revocation latency.
      log(`revocation: ${values.trials} trials with an open watch`);
      const gatewayGet = (path: string) =>
        new Promise<number>((resolve, reject) => {
          const req = httpsRequest(
            `${targets.gateway.base}${path}`,
            { agent, headers: { authorization: `Bearer ${cora.token}` } },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
          req.end();
        });
      await env.kOk(['create', 'namespace', 'bench-rev']);
      const refusedMs: number[] = [];
      const watchClosedMs: number[] = [];
      for (let i = 0; i < Number(values.trials); i++) {
        const visaId = await grant('viewer', ['bench-rev']);
        for (let tries = 0; (await gatewayGet('/api/v1/namespaces/bench-rev/configmaps')) !== 200; tries++) {
          if (tries > 100) throw new Error('the visa never started working');
          await new Promise((r) => setTimeout(r, 20));
        }
        const watch = openWatch(
          `${targets.gateway.base}/api/v1/namespaces/bench-rev/configmaps?watch=true`,
          cora.token,
          readFileSync(env.config.tls!.caFile!),
        );
        await Promise.race([
          watch.opened,
          new Promise((_, reject) => setTimeout(() => reject(new Error('the watch did not open')), 10_000)),
        ]);
        const closed = watch.closed;
        const t0 = performance.now();
        const revoked = await call('POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason: 'bench' });
        if (revoked.status !== 200) throw new Error(`revoke failed: ${JSON.stringify(revoked.body)}`);
        let status = await gatewayGet('/api/v1/namespaces/bench-rev/configmaps');
        while (status === 200) {
          if (performance.now() - t0 > 10_000) throw new Error('the gateway still answers 10 s after the revoke');
          status = await gatewayGet('/api/v1/namespaces/bench-rev/configmaps');
        }
        if (i % 10 === 9) log(`  ${i + 1} trials`);
        refusedMs.push(performance.now() - t0);
        watchClosedMs.push((await closed) - t0);
      }
      refusedMs.sort((a, b) => a - b);
      watchClosedMs.sort((a, b) => a - b);
      results.revocation = {
        trials: refusedMs.length,
        firstRefusedMs: {
          p50: round(percentile(refusedMs, 50)),
          p99: round(percentile(refusedMs, 99)),
          max: round(refusedMs.at(-1)!),
        },
        watchClosedMs: {
          p50: round(percentile(watchClosedMs, 50)),
          p99: round(percentile(watchClosedMs, 99)),
          max: round(watchClosedMs.at(-1)!),
        },
      };
      log(
        `revocation: first refused p99 ${round(percentile(refusedMs, 99))} ms; watch closed p99 ${round(percentile(watchClosedMs, 99))} ms (from the start of the revoke call)`,
      );
    }
    if (parts.has('streams')) {
      // exec and port-forward streams, through the real kubectl.
      log(`revocation of exec / port-forward: ${values.streamTrials} trials each`);
      await env.kOk(['create', 'namespace', 'bench-stream']);
      await new Promise((r) => setTimeout(r, 1500));
      await env.kOk(['run', 'app', '-n', 'bench-stream', '--image=registry.example/app:1']);
      await new Promise((r) => setTimeout(r, 3000));
      const gwKubeconfig = await env.writeGatewayKubeconfig(cora.token, 'bench-gw');
      const streamMs: Record<string, number[]> = { exec: [], portForward: [] };
      for (let i = 0; i < Number(values.streamTrials); i++) {
        for (const kind of ['exec', 'portForward'] as const) {
          const visaId = await grant('debugger', ['bench-stream']);
          await new Promise((r) => setTimeout(r, 300));
          const args =
            kind === 'exec'
              ? ['exec', '-n', 'bench-stream', 'app', '--', 'sh', '-c', 'echo exec-running; sleep 60']
              : ['port-forward', '-n', 'bench-stream', 'pod/app', ':8080'];
          const proc = kubectlBackground(env.cp.binaries.kubectl, args, { kubeconfig: gwKubeconfig });
          if (kind === 'portForward') await proc.waitFor(/Forwarding from/);
          else await proc.waitFor(/exec-running/);
          const exited = new Promise<number>((resolve) => proc.child.once('exit', () => resolve(performance.now())));
          const t0 = performance.now();
          await call('POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason: 'bench' });
          if (kind === 'portForward') {
            // kubectl port-forward keeps listening until a connection fails; the gateway-side close is what we time.
            proc.child.kill('SIGKILL');
            streamMs[kind]!.push(NaN);
          } else {
            streamMs[kind]!.push(
              (await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(NaN), 10_000))])) - t0,
            );
          }
          proc.child.kill('SIGKILL');
        }
      }
      const execFailed = streamMs.exec!.filter((n) => Number.isNaN(n)).length;
      if (execFailed > 0)
        failures.push(`exec: ${execFailed} of ${streamMs.exec!.length} trials did not end within 10 s of the revoke`);
      const execSorted = streamMs.exec!.filter((n) => !Number.isNaN(n)).sort((a, b) => a - b);
      results.execClosedMs = {
        trials: execSorted.length,
        p50: round(percentile(execSorted, 50)),
        p99: round(percentile(execSorted, 99)),
        note: 'until the kubectl exec process exits',
      };
      log(
        `exec: kubectl exits p50 ${round(percentile(execSorted, 50))} ms p99 ${round(percentile(execSorted, 99))} ms after the revoke call starts`,
      );
    }
    if (parts.has('memory')) {
      // Memory with many open watches.
      const watchCount = Number(values.watches);
      log(`memory: opening ${watchCount} watches through the gateway`);
      await grant('viewer', ['bench-gw']);
      await new Promise((r) => setTimeout(r, 1000));
      const rssBefore = rssMb(serverPid);
      const watchAgent = new Agent({
        keepAlive: true,
        maxSockets: Infinity,
        ca: readFileSync(env.config.tls!.caFile!),
      });
      const sockets: { destroy: () => void }[] = [];
      let openedCount = 0;
      await Promise.all(
        Array.from(
          { length: watchCount },
          () =>
            new Promise<void>((resolve) => {
              const req = httpsRequest(
                `${targets.gateway.base}/api/v1/namespaces/bench-gw/configmaps?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Done`,
                { agent: watchAgent, headers: { authorization: `Bearer ${cora.token}` } },
                (res) => {
                  if (res.statusCode === 200) openedCount++;
                  res.on('data', () => {});
                  resolve();
                },
              );
              req.on('error', () => resolve());
              sockets.push(req);
              req.end();
            }),
        ),
      );
      await new Promise((r) => setTimeout(r, 2000));
      const rssAfter = rssMb(serverPid);
      results.memory = {
        watches: openedCount,
        rssBeforeMb: round(rssBefore),
        rssAfterMb: round(rssAfter),
        perWatchKb: round(((rssAfter - rssBefore) * 1024) / Math.max(1, openedCount)),
      };
      log(`memory: ${openedCount} watches open: gateway RSS ${round(rssBefore)} → ${round(rssAfter)} MB`);
      for (const s of sockets) s.destroy();
      watchAgent.destroy();
    }
    agent.destroy();
  } finally {
    for (const c of children) c.kill('SIGKILL');
    if (server) {
      server.kill('SIGTERM');
      await waitForExit(server);
    }
    await env.stop();
  }
  if (failures.length > 0) results.failures = failures;
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
  if (failures.length > 0) {
    process.stderr.write(
      `[bench] these figures include failures, not only the measured path:\n  ${failures.join('\n  ')}\n`,
    );
    process.exitCode = 1;
  }
}

await main();
