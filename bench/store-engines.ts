/**
 * Both store engines, same run, same machine:
 *  - the store alone: audit appends through each engine's own appender (`store.openAuditAppender()`: SQLite's
 *    worker thread, PostgreSQL's group commit) at 1, 64 and 256 concurrent writers, and the visa lifecycle
 *    (request → approve → active → expire, each step one transaction with its audit event) with 16 concurrent visas;
 *  - a real server on each engine, with the real control plane (unless --store-only): the gateway's per-request
 *    cost (bench/gateway.ts --parts throughput: wrk through the gateway, the server's CPU and, on PostgreSQL, its
 *    database sessions' CPU per request) and expiry lateness at 2,000 visas (bench/visa-lifecycle.ts: deadline →
 *    DELETED event of the RoleBinding on a cluster-side watch).
 * PostgreSQL is the test one (127.0.0.1:5432, or KUBEVISA_TEST_POSTGRES_URL), in throwaway databases. Ratios are
 * PostgreSQL / SQLite.
 *
 *   node bench/store-engines.ts [--seconds 3] [--visas 2000] [--store-only] [--parallel-groups N]
 *
 * `--parallel-groups` sets PostgreSQL's commit groups running at once (default the engine's, 2).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { verifyChain } from '../src/store/audit-chain.ts';
import { openPostgresStore } from '../src/store/postgres/store.ts';
import { createTestDatabase } from '../src/store/postgres/test-database.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import type { AuditEvent, Store } from '../src/store/store.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    visas: { type: 'string', default: '2000' },
    'store-only': { type: 'boolean', default: false },
    'parallel-groups': { type: 'string' },
  },
});
const parallelGroups = values['parallel-groups'] === undefined ? undefined : Number(values['parallel-groups']);
const seconds = Number(values.seconds);
const ENGINES = ['sqlite', 'postgres'] as const;
const T0 = Date.now();

async function appendRate(store: Store, writers: number): Promise<{ perSecond: number; p50: number; p99: number }> {
  const appender = store.openAuditAppender();
  const latencies: number[] = [];
  let count = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await appender.write([
          { at: Date.now(), actor: 'system', action: 'gateway.request', outcome: 'ok', details: { w, verb: 'get' } },
        ]);
        latencies.push(performance.now() - start);
        count++;
      }
    }),
  );
  await appender.close();
  latencies.sort((a, b) => a - b);
  return {
    perSecond: Math.round(count / seconds),
    p50: latencies[Math.floor(latencies.length * 0.5)] ?? 0,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
  };
}

async function lifecycleRate(
  store: Store,
  concurrency: number,
): Promise<{ perSecond: number; p50: number; events: number }> {
  const alice = await store.transaction(async (tx) => {
    const person = await tx.upsertPersonFromLogin({
      issuer: 'i',
      subject: 'alice',
      email: 'alice@vendor.example',
      displayName: 'Alice',
      groups: [],
      now: T0,
    });
    await tx.insertEngagement({
      id: 'e_bench',
      name: 'Bench',
      vendor: 'V',
      contractors: [person.email],
      sponsor: 'sam@corp.example',
      startsAt: T0,
      endsAt: T0 + 86_400_000,
      ceiling: { clusters: ['prod'], namespacePatterns: ['*'], profiles: ['viewer'] },
      maxVisaSeconds: 3600,
      status: 'active',
      createdAt: T0,
      createdBy: 'admin@corp.example',
    });
    return person;
  });
  const latencies: number[] = [];
  let visas = 0;
  let events = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const start = performance.now();
        const id = `v_${w}_${i}`;
        let visa = await store.transaction(async (tx) => {
          const inserted = await tx.insertVisa({
            id,
            engagementId: 'e_bench',
            personId: alice.id,
            personEmail: alice.email,
            cluster: 'prod',
            namespaces: ['payments'],
            profile: 'viewer',
            reason: 'bench',
            requestedAt: T0,
            requestedSeconds: 3600,
            notBefore: T0,
            notAfter: T0 + 3_600_000,
            state: 'requested',
            approvals: [],
            requiredApprovals: 1,
          });
          await tx.appendAudit({ at: T0, actor: alice.email, action: 'visa.requested', visaId: id, outcome: 'ok' });
          return inserted;
        });
        for (const [state, action] of [
          ['approved', 'visa.approved'],
          ['active', 'visa.activated'],
          ['expired', 'visa.expired'],
        ] as const) {
          const current = visa;
          visa = await store.transaction(async (tx) => {
            const next = await tx.updateVisa({ ...current, state }, current.version);
            await tx.appendAudit({ at: T0, actor: 'system', action, visaId: id, outcome: 'ok' });
            return next;
          });
        }
        latencies.push(performance.now() - start);
        visas++;
        events += 4;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return {
    perSecond: Math.round(visas / seconds),
    p50: latencies[Math.floor(latencies.length * 0.5)] ?? 0,
    events,
  };
}

async function measure(name: string, open: () => Promise<Store>): Promise<Record<string, string>> {
  const results: Record<string, string> = {};
  for (const writers of [1, 64, 256]) {
    const store = await open();
    const r = await appendRate(store, writers);
    results[`append ${writers}`] = `${r.perSecond}/s p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms`;
    const verdict = verifyChain(await store.listAudit({ limit: 10000 }));
    if (!verdict.ok) throw new Error(`${name}: chain broken: ${verdict.message}`);
    await store.close();
  }
  const store = await open();
  const l = await lifecycleRate(store, 16);
  results['lifecycle x16'] = `${l.perSecond} visas/s (4 tx each) p50 ${l.p50.toFixed(1)} ms`;
  // Every step's event is in one chain, whatever ran side by side.
  const trail: AuditEvent[] = [];
  for (let page = await store.listAudit({ limit: 10000 }); page.length > 0;) {
    trail.push(...page);
    page = await store.listAudit({ afterSeq: page.at(-1)?.seq ?? 0, limit: 10000 });
  }
  const verdict = verifyChain(trail);
  if (!verdict.ok) throw new Error(`${name}: lifecycle chain broken: ${verdict.message}`);
  if (trail.length !== l.events) throw new Error(`${name}: ${trail.length} events in the chain, ${l.events} committed`);
  await store.close();
  return results;
}

/** Runs one of the cluster benchmarks with `--store engine` and returns what it wrote with --json. */
async function clusterBench(script: string, engine: string, args: string[], dir: string): Promise<unknown> {
  const json = join(dir, `${script}-${engine}.json`);
  const path = fileURLToPath(new URL(`./${script}.ts`, import.meta.url));
  process.stderr.write(`[bench] ${script} on ${engine}\n`);
  const child = promisify(execFile)(process.execPath, [path, '--store', engine, '--json', json, ...args], {
    maxBuffer: 1 << 24,
  });
  child.child.stderr?.pipe(process.stderr);
  await child;
  return JSON.parse(await readFile(json, 'utf8'));
}

const ratio = (postgres: number, sqlite: number) => (sqlite === 0 ? 'n/a' : `×${(postgres / sqlite).toFixed(2)}`);

interface GatewayRow {
  endpoint: string;
  connections: number;
  gateway: { rps: number; p50ms: number; p99ms: number; frontCpuMsPerReq: number; databaseCpuMsPerReq?: number };
}
interface Lateness {
  latenessMs: { p50: number; p99: number; max: number };
  clusterLatenessMs: { p50: number; p99: number; max: number };
  clusterDeletionsObserved: number;
  visas: number;
  setupSeconds: number;
}

const dir = await mkdtemp(join(tmpdir(), 'kubevisa-bench-'));
const database = await createTestDatabase('kv_bench');
let n = 0;
try {
  const sqlite = await measure('sqlite', () => openSqliteStore({ path: join(dir, `s${++n}.db`) }));
  const postgres = await measure('postgres', async () => {
    const schema = `b${++n}`;
    await database.admin(`CREATE SCHEMA ${schema}`);
    return openPostgresStore({
      url: database.url,
      schema,
      ...(parallelGroups === undefined ? {} : { parallelGroups }),
    });
  });
  console.log(`| case | SQLite | PostgreSQL | PostgreSQL / SQLite |\n| --- | --- | --- | --- |`);
  for (const key of Object.keys(sqlite)) {
    const rate = (text: string | undefined) => Number(/^(\d+)/.exec(text ?? '')?.[1] ?? 0);
    console.log(`| ${key} | ${sqlite[key]} | ${postgres[key]} | ${ratio(rate(postgres[key]), rate(sqlite[key]))} |`);
  }
  if (!values['store-only']) {
    const gateway: Record<string, GatewayRow[]> = {};
    const expiry: Record<string, Lateness> = {};
    for (const engine of ENGINES) {
      const result = (await clusterBench(
        'gateway',
        engine,
        ['--parts', 'throughput', '--connections', '8', '--duration', String(Math.max(3, seconds))],
        dir,
      )) as { throughput: GatewayRow[] };
      gateway[engine] = result.throughput;
    }
    for (const engine of ENGINES) {
      const result = (await clusterBench(
        'visa-lifecycle',
        engine,
        ['--approvals', '0', '--small', '0', '--large', values.visas!],
        dir,
      )) as { expiry_large: Lateness };
      expiry[engine] = result.expiry_large;
    }
    console.log(`\n| gateway, wrk c=8 | SQLite | PostgreSQL | PostgreSQL / SQLite |\n| --- | --- | --- | --- |`);
    for (const [index, row] of (gateway.sqlite ?? []).entries()) {
      const s = row.gateway;
      const p = gateway.postgres?.[index]?.gateway;
      if (p === undefined) continue;
      const cost = (g: GatewayRow['gateway']) => g.frontCpuMsPerReq + (g.databaseCpuMsPerReq ?? 0);
      console.log(`| ${row.endpoint}: req/s | ${s.rps} | ${p.rps} | ${ratio(p.rps, s.rps)} |`);
      console.log(
        `| ${row.endpoint}: p50 / p99 ms | ${s.p50ms} / ${s.p99ms} | ${p.p50ms} / ${p.p99ms} | ${ratio(p.p99ms, s.p99ms)} (p99) |`,
      );
      console.log(
        `| ${row.endpoint}: CPU ms/request (server + database) | ${cost(s)} | ${p.frontCpuMsPerReq} + ${p.databaseCpuMsPerReq ?? 0} | ${ratio(cost(p), cost(s))} |`,
      );
    }
    console.log(
      `\n| expiry, ${values.visas} visas | SQLite | PostgreSQL | PostgreSQL / SQLite |\n| --- | --- | --- | --- |`,
    );
    const s = expiry.sqlite;
    const p = expiry.postgres;
    if (s !== undefined && p !== undefined) {
      const row = (label: string, pick: (l: Lateness) => number) =>
        console.log(`| ${label} | ${pick(s)} | ${pick(p)} | ${ratio(pick(p), pick(s))} |`);
      row('granting them (request + approve, 8 clients), s', (l) => l.setupSeconds);
      row('lateness at the cluster (watch), p50 ms', (l) => l.clusterLatenessMs.p50);
      row('lateness at the cluster (watch), p99 ms', (l) => l.clusterLatenessMs.p99);
      row('lateness at the cluster (watch), max ms', (l) => l.clusterLatenessMs.max);
      row('deletions the watch saw', (l) => l.clusterDeletionsObserved);
      row('lateness as recorded by the reconciler, p99 ms', (l) => l.latenessMs.p99);
    }
  }
} finally {
  await database.drop();
  await rm(dir, { recursive: true, force: true });
}
