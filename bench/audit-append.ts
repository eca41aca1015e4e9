/**
 * Audit append throughput with durability on: concurrent writers, each appending one event per transaction
 * (`store.transaction(tx => tx.appendAudit(e))`, what every API action and gateway request does) to the real
 * SQLite store on this disk (WAL, synchronous=FULL: nothing is acknowledged before its fsync). Reports events/s
 * and time-to-acknowledge (p50, p99, max) per number of writers, with group commit and, for comparison in the
 * same run, without it (maxGroupSize 1: one fsync per transaction). The disk's own fsync rate is measured first.
 *
 * Run: node bench/audit-append.ts [--writers 1,64,256,1024] [--seconds 5] [--trials 3] [--dir DIR] [--json FILE]
 */
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { auditContentText } from '../src/store/audit-chain.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import type { NewAuditEvent } from '../src/store/store.ts';

const { values } = parseArgs({
  options: {
    writers: { type: 'string', default: '1,64,256,1024' },
    seconds: { type: 'string', default: '5' },
    trials: { type: 'string', default: '3' },
    baseline: { type: 'string', default: '64' },
    dir: { type: 'string' },
    json: { type: 'string' },
  },
});
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;

/** A gateway request as the trail records it (about 300 bytes of content). */
function gatewayEvent(i: number): NewAuditEvent {
  return {
    at: Date.now(),
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

/** fdatasync()s per second of 4 KiB writes in `dir`, for 2 s: what one-fsync-per-transaction is bounded by. */
function diskFsyncRate(dir: string): number {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 7);
  let count = 0;
  const end = performance.now() + 2000;
  try {
    while (performance.now() < end) {
      writeSync(fd, block, 0, block.length, 0);
      fdatasyncSync(fd);
      count++;
    }
  } finally {
    closeSync(fd);
  }
  return Math.round(count / 2);
}

interface Trial {
  writers: number;
  maxGroupSize: number;
  eventsPerSecond: number;
  ackP50Ms: number;
  ackP99Ms: number;
  ackMaxMs: number;
  /** CPU this process spent per event (user + system), in microseconds: what the machine's load cannot inflate. */
  cpuMicrosecondsPerEvent: number;
}

async function trial(dir: string, writers: number, maxGroupSize: number, seconds: number): Promise<Trial> {
  const path = join(dir, `append-${writers}-${maxGroupSize}-${Date.now()}.db`);
  const store = await openSqliteStore({ path, maxGroupSize });
  const latencies: number[] = [];
  let measured = 0;
  const warmUpEnds = performance.now() + 1000;
  const ends = warmUpEnds + seconds * 1000;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  setTimeout(() => (cpuAtStart = process.cpuUsage()), 1000);
  let i = 0;
  const writer = async () => {
    for (;;) {
      const started = performance.now();
      if (started >= ends) return;
      await store.transaction((tx) => tx.appendAudit(gatewayEvent(i++)));
      const done = performance.now();
      if (started >= warmUpEnds && done <= ends) {
        latencies.push(done - started);
        measured++;
      }
    }
  };
  await Promise.all(Array.from({ length: writers }, writer));
  const cpu = process.cpuUsage(cpuAtStart);
  await store.close();
  for (const suffix of ['', '-wal', '-shm']) await rm(`${path}${suffix}`, { force: true });
  latencies.sort((a, b) => a - b);
  return {
    writers,
    maxGroupSize,
    eventsPerSecond: Math.round(measured / seconds),
    ackP50Ms: Number(percentile(latencies, 50).toFixed(2)),
    ackP99Ms: Number(percentile(latencies, 99).toFixed(2)),
    ackMaxMs: Number((latencies.at(-1) ?? Number.NaN).toFixed(2)),
    cpuMicrosecondsPerEvent: Number(((cpu.user + cpu.system) / Math.max(1, measured)).toFixed(1)),
  };
}

async function main() {
  const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'kubevisa-bench-audit-')));
  const seconds = Number(values.seconds);
  const trials = Number(values.trials);
  const writerCounts = values.writers.split(',').map(Number);
  const recordBytes = Buffer.byteLength(
    auditContentText({ ...gatewayEvent(0), details: gatewayEvent(0).details ?? {} }),
  );
  log(
    `database in ${dir}; record content ${recordBytes} bytes; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  const fsyncs = diskFsyncRate(dir);
  log(`disk: ${fsyncs} fdatasync/s (4 KiB writes)`);
  const results: { groupCommit: Trial[]; oneFsyncPerTransaction: Trial[] } = {
    groupCommit: [],
    oneFsyncPerTransaction: [],
  };
  // Best of the trials for each setting: this machine is shared, and the best run is the least disturbed one.
  const best = async (writers: number, maxGroupSize: number) => {
    let chosen: Trial | undefined;
    for (let t = 0; t < trials; t++) {
      const result = await trial(dir, writers, maxGroupSize, seconds);
      log(
        `  ${writers} writers, group ≤ ${maxGroupSize}: ${result.eventsPerSecond} events/s, p99 ${result.ackP99Ms} ms`,
      );
      if (chosen === undefined || result.eventsPerSecond > chosen.eventsPerSecond) chosen = result;
    }
    return chosen as Trial;
  };
  try {
    for (const writers of writerCounts) results.groupCommit.push(await best(writers, 1000));
    results.oneFsyncPerTransaction.push(await best(Number(values.baseline), 1));
  } finally {
    if (values.dir === undefined) await rm(dir, { recursive: true, force: true });
  }
  const table = [
    'writers  group≤  events/s  ack p50 ms  ack p99 ms  ack max ms  cpu µs/event',
    ...[...results.groupCommit, ...results.oneFsyncPerTransaction].map(
      (r) =>
        `${String(r.writers).padStart(7)}  ${String(r.maxGroupSize).padStart(6)}  ${String(r.eventsPerSecond).padStart(8)}  ` +
        `${String(r.ackP50Ms).padStart(10)}  ${String(r.ackP99Ms).padStart(10)}  ${String(r.ackMaxMs).padStart(10)}  ` +
        `${String(r.cpuMicrosecondsPerEvent).padStart(12)}`,
    ),
  ];
  process.stdout.write(`${table.join('\n')}\n`);
  const summary = {
    diskFdatasyncPerSecond: fsyncs,
    recordContentBytes: recordBytes,
    loadAverage: loadavg(),
    ...results,
  };
  if (values.json !== undefined) await writeFile(values.json, `${JSON.stringify(summary, null, 2)}\n`);
}

await main();
