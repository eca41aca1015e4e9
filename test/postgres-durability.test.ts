/**
 * The PostgreSQL engine under real concurrency and a real database restart: several writer processes
 * (test/support/postgres-writer.ts) append to one database at once, and PostgreSQL itself is restarted while they
 * write. Whatever a writer was told is committed must be there afterwards, and the audit trail must be one
 * unbroken chain.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { verifyChain } from '../src/store/audit-chain.ts';
import { openPostgresStore, type PostgresStore } from '../src/store/postgres/store.ts';
import {
  createTestDatabase,
  RESTARTABLE_POSTGRES_URL,
  restartTestPostgres,
  type TestDatabase,
} from '../src/store/postgres/test-database.ts';
import type { AuditEvent } from '../src/store/store.ts';

const writerPath = fileURLToPath(new URL('./support/postgres-writer.ts', import.meta.url));
const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);

interface Writer {
  child: ChildProcess;
  /** Acknowledged writes: key → seq of its audit event. */
  acked: Map<string, { kind: string; seq: number }>;
  refused: number;
  ready: Promise<void>;
  exited: Promise<void>;
}

function startWriter(url: string, name: string, mode: 'transaction' | 'appender', count = 0): Writer {
  const child = spawn(process.execPath, ['--disable-proto=throw', writerPath, url, name, mode, String(count)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const writer: Writer = {
    child,
    acked: new Map(),
    refused: 0,
    ready: Promise.resolve(),
    exited: once(child, 'exit').then(([code]) => {
      assert.equal(code, 0, `writer ${name} exited with ${String(code)}`);
    }),
  };
  let markReady!: () => void;
  writer.ready = new Promise((resolve) => (markReady = resolve));
  const lines = createInterface({ input: child.stdout ?? assert.fail('no stdout') });
  lines.on('line', (line) => {
    const [word, kind, key, seq] = line.split(' ');
    if (word === 'ready') markReady();
    else if (word === 'ack' && kind && key && seq) writer.acked.set(key, { kind, seq: Number(seq) });
    else if (word === 'refused') writer.refused++;
  });
  return writer;
}

/** Waits (bounded) until `condition` holds. */
async function until(what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function allEvents(store: PostgresStore): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  for (;;) {
    const page = await store.listAudit({ afterSeq: events.at(-1)?.seq ?? 0, limit: 10000 });
    events.push(...page);
    if (page.length < 10000) return events;
  }
}

/** Every acknowledged write is there: its visa (for a change) and its audit event at the seq it was told. */
async function assertDurable(store: PostgresStore, writers: Writer[]): Promise<number> {
  const events = await allEvents(store);
  const verdict = verifyChain(events);
  assert.equal(verdict.ok, true, verdict.ok ? '' : verdict.message);
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => i + 1),
    'seq 1..n without gaps',
  );
  const bySeq = new Map(events.map((e) => [e.seq, e]));
  let acknowledged = 0;
  for (const writer of writers) {
    for (const [key, { kind, seq }] of writer.acked) {
      acknowledged++;
      // A transaction's event gets its seq at commit (the writer prints 0): it is found by its visa.
      const event =
        kind === 'change' ? events.find((e) => e.visaId === key && e.action === 'visa.approved') : bySeq.get(seq);
      assert.ok(event, `acknowledged ${kind} ${key} has no audit event (seq ${seq})`);
      if (kind === 'change') {
        assert.equal(event.visaId, key);
        const visa = await store.getVisa(key);
        assert.equal(visa?.state, 'approved', `acknowledged visa ${key} is missing`);
      } else {
        assert.equal(event.details.key, key);
      }
    }
  }
  return acknowledged;
}

async function seed(url: string): Promise<void> {
  const store = await openPostgresStore({ url });
  try {
    await store.transaction(async (tx) => {
      await tx.upsertPersonFromLogin({
        issuer: 'https://idp.example',
        subject: 'alice',
        email: 'alice@vendor.example',
        displayName: 'Alice',
        groups: [],
        now: T0,
      });
      await tx.insertEngagement({
        id: 'e_durability',
        name: 'Durability',
        vendor: 'Vendor Ltd',
        contractors: ['alice@vendor.example'],
        sponsor: 'sam@corp.example',
        startsAt: T0,
        endsAt: T0 + 86_400_000 * 365,
        ceiling: { clusters: ['prod'], namespacePatterns: ['payments'], profiles: ['viewer'] },
        maxVisaSeconds: 8 * 3600,
        status: 'active',
        createdAt: T0,
        createdBy: 'admin@corp.example',
      });
    });
  } finally {
    await store.close();
  }
}

describe('PostgreSQL engine with several processes', () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase('kv_test_durability');
    await seed(database.url);
  });
  after(async () => {
    await database.drop();
  });

  test('writers in four processes build one audit chain without gaps; every acknowledged write is there', async () => {
    const writers = [
      startWriter(database.url, 'tx1', 'transaction', 120),
      startWriter(database.url, 'tx2', 'transaction', 120),
      startWriter(database.url, 'batch1', 'appender', 150),
      startWriter(database.url, 'batch2', 'appender', 150),
    ];
    await Promise.all(writers.map((w) => w.exited));
    assert.deepEqual(
      writers.map((w) => w.acked.size),
      [120, 120, 150, 150],
    );
    const store = await openPostgresStore({ url: database.url });
    try {
      assert.equal(await assertDurable(store, writers), 540);
      assert.equal((await store.getAuditHead())?.seq, 540);
    } finally {
      await store.close();
    }
  });
});

describe('PostgreSQL restarted under load', () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase('kv_test_restart', RESTARTABLE_POSTGRES_URL);
    await seed(database.url);
  });
  after(async () => {
    await database.drop();
  });

  test('nothing acknowledged is lost and the chain verifies after PostgreSQL restarts mid-load', async () => {
    const writers = [
      startWriter(database.url, 'tx1', 'transaction'),
      startWriter(database.url, 'tx2', 'transaction'),
      startWriter(database.url, 'batch1', 'appender'),
    ];
    try {
      await Promise.all(writers.map((w) => w.ready));
      await until('every writer to be acknowledged 20 times', () => writers.every((w) => w.acked.size >= 20));
      // Fast shutdown: the server ends every session (in-flight transactions roll back), checkpoints and starts
      // again; the writers' connections break mid-transaction.
      // Fast shutdown: the writers' connections break mid-transaction.
      await restartTestPostgres();
      const before = writers.map((w) => w.acked.size);
      await until('every writer to be acknowledged again after the restart', () =>
        writers.every((w, i) => w.acked.size >= (before[i] ?? 0) + 20),
      );
    } finally {
      for (const writer of writers) writer.child.kill('SIGTERM');
      await Promise.all(writers.map((w) => w.exited));
    }
    assert.ok(
      writers.some((w) => w.refused > 0),
      'the restart broke at least one write (otherwise the test proved nothing about it)',
    );
    const store = await openPostgresStore({ url: database.url });
    try {
      const acknowledged = await assertDurable(store, writers);
      assert.ok(acknowledged >= 120);
    } finally {
      await store.close();
    }
  });
});
