/**
 * Audit verification throughput:
 *  - offline: `verifyExportFile` on an exported trail of N events (default 1,000,000), as
 *    `kubevisa audit verify --from FILE` runs it, on this thread and on 1, 2, … worker threads;
 *  - server-side: `AuditService.verifyTrail` over the same number of events in a real SQLite store (default
 *    200,000), as `POST /api/v1/audit/verify` runs it;
 *  - in memory: `verifyChain` over event objects.
 * Best of --trials runs each (the machine is shared).
 *
 * Run: node bench/audit-verify.ts [--events 1000000] [--server-events 200000] [--trials 3] [--json FILE]
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadOrCreateCheckpointKey } from '../src/audit/checkpoints.ts';
import { exportLine } from '../src/audit/jsonl.ts';
import { LATEST_CHECKPOINT_FILE } from '../src/audit/latest-file.ts';
import { AuditService } from '../src/audit/service.ts';
import { verifyExportFile } from '../src/audit/verify-file.ts';
import { GENESIS_HASH, auditContentText, computeAuditHash, verifyChain } from '../src/store/audit-chain.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import type { AuditEvent, NewAuditEvent } from '../src/store/store.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '1000000' },
    'server-events': { type: 'string', default: '200000' },
    trials: { type: 'string', default: '3' },
    json: { type: 'string' },
  },
});
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

function gatewayEvent(i: number): NewAuditEvent & { details: NonNullable<NewAuditEvent['details']> } {
  return {
    at: 1_900_000_000_000 + i,
    actor: 'cora@vendor.example',
    sessionId: 's_7kq2xw3nbr5fhm4lq6ytdpvzea',
    action: 'gateway.request',
    visaId: 'v_b4n6q2rt7xk3mw5zp8ycd2jfha',
    personId: 'p_2mx7w4kq9rtb3nz6cd5yhf8jpa',
    cluster: 'prod',
    namespace: 'payments',
    outcome: 'ok',
    details: { verb: 'list', resource: 'pods', status: 200, bytes: 18_432 + (i % 1000), durationMs: 4 },
    source: { address: '10.1.4.23:51544', userAgent: 'kubectl/v1.37.2 (linux/amd64)' },
  };
}

async function bestOf<T>(trials: number, run: () => Promise<T>, rate: (result: T) => number): Promise<number> {
  let best = 0;
  for (let t = 0; t < trials; t++) best = Math.max(best, rate(await run()));
  return Math.round(best);
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-bench-verify-'));
  const count = Number(values.events);
  const trials = Number(values.trials);
  const results: Record<string, unknown> = { loadAverage: loadavg(), cpus: availableParallelism() };
  try {
    log(`writing an export of ${count} events`);
    const file = join(dir, 'trail.jsonl');
    const fd = openSync(file, 'w');
    let prevHash = GENESIS_HASH;
    let batch = '';
    const sample: AuditEvent[] = [];
    for (let seq = 1; seq <= count; seq++) {
      const event = { ...gatewayEvent(seq), seq, prevHash };
      const hash = computeAuditHash(event);
      batch += exportLine({ seq, prevHash, hash, contentText: auditContentText(event) });
      if (sample.length < 200_000) sample.push({ ...event, hash });
      prevHash = hash;
      if (seq % 10_000 === 0) {
        writeSync(fd, batch);
        batch = '';
      }
    }
    writeSync(fd, batch);
    closeSync(fd);
    const bytes = (await stat(file)).size;
    results.exportBytesPerEvent = Math.round(bytes / count);

    const offline: Record<string, number> = {};
    for (const workers of [0, ...Array.from({ length: Math.min(4, availableParallelism()) }, (_, i) => i + 1)]) {
      offline[`workers=${workers}`] = await bestOf(
        trials,
        async () => {
          const started = performance.now();
          const verdict = await verifyExportFile(file, { workers });
          if (!verdict.ok) throw new Error(`the generated trail did not verify: ${verdict.summary}`);
          return performance.now() - started;
        },
        (ms) => (count / ms) * 1000,
      );
      log(`offline, ${workers} worker thread(s): ${offline[`workers=${workers}`]} events/s`);
    }
    results.offlineEventsPerSecond = offline;

    results.inMemoryEventsPerSecond = await bestOf(
      trials,
      async () => {
        const started = performance.now();
        if (!verifyChain(sample).ok) throw new Error('the sample chain did not verify');
        return performance.now() - started;
      },
      (ms) => (sample.length / ms) * 1000,
    );
    log(`in memory (verifyChain): ${String(results.inMemoryEventsPerSecond)} events/s`);

    const serverCount = Number(values['server-events']);
    log(`filling a store with ${serverCount} events`);
    const store = await openSqliteStore({ path: join(dir, 'kubevisa.db') });
    for (let start = 0; start < serverCount; start += 10_000) {
      await store.transaction(async (tx) => {
        for (let i = start; i < Math.min(serverCount, start + 10_000); i++) await tx.appendAudit(gatewayEvent(i));
      });
    }
    const key = await loadOrCreateCheckpointKey(join(dir, 'key.pem'));
    const service = new AuditService({ store, key, latestCheckpointFile: join(dir, LATEST_CHECKPOINT_FILE) });
    await service.createCheckpoint();
    results.serverEventsPerSecond = await bestOf(
      trials,
      () => service.verifyTrail(),
      (verdict) => {
        if (!verdict.ok) throw new Error(verdict.summary);
        return (verdict.records / verdict.durationMs) * 1000;
      },
    );
    log(`server-side (verifyTrail over SQLite): ${String(results.serverEventsPerSecond)} events/s`);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  if (values.json !== undefined) await writeFile(values.json, `${JSON.stringify(results, null, 2)}\n`);
}

await main();
