/**
 * Both store engines, same run, same machine: audit appends through each engine's own appender
 * (`store.openAuditAppender()`: SQLite's worker thread, PostgreSQL's group commit) at 1, 64 and 256 concurrent
 * writers, and the visa lifecycle (request → approve → active → expire, each step one transaction with its audit
 * event) with 16 concurrent visas. PostgreSQL is the local one (127.0.0.1:5432), in a throwaway database.
 *
 *   node bench/store-engines.ts [seconds per case, default 3]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyChain } from '../src/store/audit-chain.ts';
import { openPostgresStore } from '../src/store/postgres/store.ts';
import { createTestDatabase } from '../src/store/postgres/test-database.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import type { Store } from '../src/store/store.ts';

const seconds = Number(process.argv[2] ?? 3);
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

async function lifecycleRate(store: Store, concurrency: number): Promise<{ perSecond: number; p50: number }> {
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
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { perSecond: Math.round(visas / seconds), p50: latencies[Math.floor(latencies.length * 0.5)] ?? 0 };
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
  await store.close();
  return results;
}

const dir = await mkdtemp(join(tmpdir(), 'kubevisa-bench-'));
const database = await createTestDatabase('kv_bench');
let n = 0;
try {
  const sqlite = await measure('sqlite', () => openSqliteStore({ path: join(dir, `s${++n}.db`) }));
  const postgres = await measure('postgres', async () => {
    const schema = `b${++n}`;
    await database.admin(`CREATE SCHEMA ${schema}`);
    return openPostgresStore({ url: database.url, schema });
  });
  console.log(`| case | SQLite | PostgreSQL |\n| --- | --- | --- |`);
  for (const key of Object.keys(sqlite)) console.log(`| ${key} | ${sqlite[key]} | ${postgres[key]} |`);
} finally {
  await database.drop();
  await rm(dir, { recursive: true, force: true });
}
