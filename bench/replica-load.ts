/**
 * Load over three replicas: C contractors (default 200), each with a visa and its own session, each sending R
 * requests a second (default 10: 2,000 a second in all) through the gateway of one of three `kubevisa server`
 * processes on one PostgreSQL, while W watches (default 2,000) are held open across the three. The baseline, in the
 * same run, is the same schedule of the same requests sent straight to kube-apiserver with the admin credential.
 *
 * The load is open-loop (requests leave on schedule whether or not earlier ones came back), so a saturated gateway
 * shows as latency and a shortfall in throughput, not as a politely slower client. Reported: requests sent and
 * answered per second, latency p50/p99/max and the p99 added over the baseline, errors by status, and each replica's
 * CPU (cores used over the phase) and memory. Any error fails the run.
 *
 * Run: node bench/replica-load.ts [--contractors 200] [--rate 10] [--watches 2000] [--duration 20] [--json FILE]
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { VISA_ROLE_BINDING_SELECTOR } from '../src/cluster/objects.ts';
import { api, CLUSTER, inDays, loginAs, people } from '../test/support/kubevisa-env.ts';
import {
  createNamespaces,
  log,
  openWatch,
  pool,
  positiveOption,
  round,
  startReplicaSet,
  summary,
  usage,
  type Stream,
} from './support/replica-set.ts';

const { values } = parseArgs({
  options: {
    contractors: { type: 'string', default: '200' },
    rate: { type: 'string', default: '10' },
    watches: { type: 'string', default: '2000' },
    duration: { type: 'string', default: '20' },
    json: { type: 'string' },
  },
});
const CONTRACTORS = positiveOption(values, 'contractors');
const RATE = positiveOption(values, 'rate');
const WATCHES = positiveOption(values, 'watches');
const DURATION_S = positiveOption(values, 'duration');
const NAMESPACES = Math.min(20, CONTRACTORS);
/** Beyond this many requests in flight the generator stops sending and counts what it could not send. */
const MAX_IN_FLIGHT = 4000;

interface Target {
  /** Where request i of contractor c goes (one replica's gateway, or kube-apiserver). */
  url: (contractor: number) => string;
  options: (contractor: number) => RequestOptions;
}

interface PhaseResult {
  sent: number;
  answered: number;
  notSent: number;
  sentPerSecond: number;
  answeredPerSecond: number;
  latencyMs: ReturnType<typeof summary>;
  errors: Record<string, number>;
}

/** Sends CONTRACTORS × RATE requests a second for DURATION_S seconds on schedule; resolves when all came back. */
async function phase(target: Target): Promise<PhaseResult> {
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let inFlight = 0;
  let sent = 0;
  let notSent = 0;
  const perTick = (CONTRACTORS * RATE) / 100; // one tick every 10 ms
  const started = performance.now();
  let owed = 0;
  let nextContractor = 0;
  const pending: Promise<void>[] = [];
  for (let tick = 0; performance.now() - started < DURATION_S * 1000; tick++) {
    owed += perTick;
    while (owed >= 1) {
      owed--;
      const contractor = nextContractor++ % CONTRACTORS;
      if (inFlight >= MAX_IN_FLIGHT) {
        notSent++;
        continue;
      }
      inFlight++;
      sent++;
      const at = performance.now();
      pending.push(
        new Promise<void>((resolve) => {
          const request = httpsRequest(target.url(contractor), target.options(contractor), (response) => {
            response.on('data', () => {});
            response.on('end', () => {
              inFlight--;
              if (response.statusCode === 200) latencies.push(performance.now() - at);
              else errors[String(response.statusCode)] = (errors[String(response.statusCode)] ?? 0) + 1;
              resolve();
            });
          });
          request.setTimeout(30_000, () => request.destroy(new Error('timeout')));
          request.on('error', (error: NodeJS.ErrnoException) => {
            inFlight--;
            errors[error.code ?? error.message] = (errors[error.code ?? error.message] ?? 0) + 1;
            resolve();
          });
          request.end();
        }),
      );
    }
    const due = started + (tick + 1) * 10;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
  }
  const sendingSeconds = (performance.now() - started) / 1000;
  await Promise.all(pending);
  const answeredSeconds = (performance.now() - started) / 1000;
  return {
    sent,
    answered: latencies.length,
    notSent,
    sentPerSecond: round(sent / sendingSeconds),
    answeredPerSecond: round(latencies.length / answeredSeconds),
    latencyMs: summary(latencies),
    errors,
  };
}

async function main() {
  const accounts = Array.from({ length: CONTRACTORS }, (_, i) => {
    const sub = `lc-${String(i).padStart(3, '0')}`;
    return { sub, email: `${sub}@vendor.example`, name: sub, password: `${sub}-pw`, groups: ['vendor-acme'] };
  });
  const set = await startReplicaSet(accounts);
  const { env, replicas, ca } = set;
  const streams: Stream[] = [];
  const failures: string[] = [];
  try {
    const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `lv-${String(i).padStart(2, '0')}`);
    await createNamespaces(env, namespaces);
    const sam = (await loginAs(replicas[0]!.url, people.sam)).token;
    const ann = (await loginAs(replicas[1]!.url, people.ann)).token;
    const engagement = await api(replicas[2]!.url, 'POST', '/api/v1/engagements', {
      token: sam,
      body: {
        name: 'load-bench',
        vendor: 'Acme',
        contractors: accounts.map((account) => account.email),
        sponsor: people.sam.email,
        endsAt: inDays(5),
        ceiling: { clusters: [CLUSTER], namespacePatterns: ['lv-*'], profiles: ['viewer'] },
        maxVisaDuration: '8h',
      },
    });
    if (engagement.status !== 201) throw new Error(`the engagement was refused: ${JSON.stringify(engagement.body)}`);
    // kubevisa lets one address start a login a second after a burst of 60 (server/http.ts): the bench, one address,
    // waits its turn as a script would.
    log(
      `logging in ${CONTRACTORS} contractors (device flow, spread over the replicas; ~1 a second after the first 60)`,
    );
    const tokens: string[] = new Array<string>(CONTRACTORS);
    await pool(accounts, 4, async (account, i) => {
      for (let attempt = 1; ; attempt++) {
        try {
          tokens[i] = (await loginAs(replicas[i % replicas.length]!.url, account)).token;
          return;
        } catch (error) {
          if (!String(error).includes('ERR_RATE_LIMITED') || attempt > 600) throw error;
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    });
    log(`granting each contractor a visa`);
    await pool(accounts, 16, async (_, i) => {
      const via = replicas[i % replicas.length]!;
      const requested = await api(via.url, 'POST', '/api/v1/visas', {
        token: tokens[i]!,
        body: {
          profile: 'viewer',
          cluster: CLUSTER,
          namespaces: [namespaces[i % NAMESPACES]],
          duration: '4h',
          reason: 'LOAD-1',
        },
      });
      if (requested.status !== 201) throw new Error(`visa request refused: ${JSON.stringify(requested.body)}`);
      const approved = await api(via.url, 'POST', `/api/v1/visas/${String(requested.body.id)}/approve`, {
        token: ann,
        body: {},
      });
      if (approved.status !== 200) throw new Error(`approval refused: ${JSON.stringify(approved.body)}`);
    });
    for (let waited = 0; ; waited++) {
      const count = (await env.kOk(['get', 'rolebindings', '-A', '-l', VISA_ROLE_BINDING_SELECTOR, '--no-headers']))
        .split('\n')
        .filter((line) => line.trim() !== '').length;
      if (count === CONTRACTORS) break;
      if (waited > 120) throw new Error(`only ${count} of ${CONTRACTORS} RoleBindings after 2 minutes`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const path = (contractor: number) => `/api/v1/namespaces/${namespaces[contractor % NAMESPACES]}/pods?limit=500`;
    log(`opening ${WATCHES} watches over the three gateways`);
    let refused = 0;
    await pool(
      Array.from({ length: WATCHES }, (_, i) => i),
      200,
      async (i) => {
        const contractor = i % CONTRACTORS;
        const stream = openWatch(
          replicas[i % replicas.length]!,
          `/clusters/${CLUSTER}/api/v1/namespaces/${namespaces[contractor % NAMESPACES]}/pods?watch=1`,
          tokens[contractor]!,
          ca,
        );
        streams.push(stream);
        if (!(await stream.opened)) refused++;
      },
    );
    if (refused > 0) failures.push(`${refused} of ${WATCHES} watches were not opened`);

    log(`baseline: ${CONTRACTORS * RATE} requests/s straight to kube-apiserver for ${DURATION_S} s`);
    const admin = {
      ca: readFileSync(env.cp.caCertFile),
      cert: readFileSync(env.cp.adminCert.certFile),
      key: readFileSync(env.cp.adminCert.keyFile),
    };
    const directAgent = new Agent({ keepAlive: true, maxSockets: 256, ...admin });
    const direct = await phase({
      url: (c) => `${env.cp.apiServerUrl}${path(c)}`,
      options: () => ({ agent: directAgent, headers: { accept: 'application/json' } }),
    });
    directAgent.destroy();

    log(`through the gateways: ${CONTRACTORS * RATE} requests/s over 3 replicas for ${DURATION_S} s`);
    const agents = replicas.map(() => new Agent({ keepAlive: true, maxSockets: 256, ca }));
    const before = replicas.map((replica) => usage(replica.child.pid!));
    const startedAt = performance.now();
    const gateway = await phase({
      url: (c) => `${replicas[c % replicas.length]!.url}/clusters/${CLUSTER}${path(c)}`,
      options: (c) => ({
        agent: agents[c % replicas.length]!,
        headers: { accept: 'application/json', authorization: `Bearer ${tokens[c]!}` },
      }),
    });
    const seconds = (performance.now() - startedAt) / 1000;
    const after = replicas.map((replica) => usage(replica.child.pid!));
    agents.forEach((agent) => agent.destroy());
    const stillOpen = streams.filter((stream) => !stream.ended()).length;
    if (stillOpen !== WATCHES - refused)
      failures.push(`${WATCHES - refused - stillOpen} watches ended during the load`);
    for (const [name, result] of [
      ['baseline', direct],
      ['gateway', gateway],
    ] as const) {
      const errorCount = Object.values(result.errors).reduce((sum, n) => sum + n, 0);
      if (errorCount > 0) failures.push(`${name}: ${errorCount} errors ${JSON.stringify(result.errors)}`);
      if (result.notSent > 0)
        failures.push(`${name}: ${result.notSent} requests not sent (over ${MAX_IN_FLIGHT} in flight)`);
    }
    const results = {
      machine: '2 cores, 24 GiB; the control plane, PostgreSQL, three replicas and this load generator share it',
      contractors: CONTRACTORS,
      requestsPerSecondAsked: CONTRACTORS * RATE,
      watchesOpen: stillOpen,
      durationSeconds: DURATION_S,
      baseline: direct,
      gateway,
      addedP99Ms: round(gateway.latencyMs.p99 - direct.latencyMs.p99),
      addedP50Ms: round(gateway.latencyMs.p50 - direct.latencyMs.p50),
      replicas: replicas.map((replica, i) => ({
        replica: replica.name,
        cpuCores: round((after[i]!.cpuSeconds - before[i]!.cpuSeconds) / seconds),
        rssMiB: after[i]!.rssMiB,
      })),
      failures,
    };
    console.log(JSON.stringify(results, null, 2));
    if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
    console.log(
      `\n${CONTRACTORS} contractors × ${RATE}/s over 3 replicas with ${stillOpen} watches open: ${gateway.answeredPerSecond} answered/s ` +
        `(asked ${CONTRACTORS * RATE}), p50 ${gateway.latencyMs.p50} ms, p99 ${gateway.latencyMs.p99} ms ` +
        `(+${results.addedP99Ms} ms over kube-apiserver direct), errors ${JSON.stringify(gateway.errors)}`,
    );
    if (failures.length > 0) {
      console.error(`FAILED: ${failures.join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    for (const stream of streams) stream.destroy();
    await set.stop();
  }
}

await main();
