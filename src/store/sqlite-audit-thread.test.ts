import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, test } from 'node:test';
import { AuditBatcher } from '../gateway/audit-writer.ts';
import { verifyChain } from './audit-chain.ts';
import { SqliteAuditThread } from './sqlite-audit-thread.ts';
import { openSqliteStore } from './sqlite.ts';
import type { NewAuditEvent } from './store.ts';

const event = (n: number, actor: string): NewAuditEvent => ({
  at: 1_700_000_000_000 + n,
  actor,
  action: 'gateway.request',
  outcome: 'ok',
  details: { n, verb: 'get', status: 200 },
});

describe("the SQLite engine's audit appender thread", () => {
  test('appends from its own connection while the main thread appends too, and the chain stays one chain', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-audit-thread-'));
    const path = join(dir, 'kubevisa.db');
    const store = await openSqliteStore({ path });
    const thread = store.openAuditAppender();
    try {
      // Alternating: each side must link to what the other appended last.
      for (let i = 0; i < 10; i++) {
        await store.transaction((tx) => tx.appendAudit(event(i, 'api')));
        await thread.write([event(i, 'gateway'), event(i + 100, 'gateway')]);
      }
      // Then at the same time.
      await Promise.all([
        ...Array.from({ length: 20 }, (_, i) =>
          thread.write(Array.from({ length: 50 }, (_, j) => event(i * 50 + j, 'gateway'))),
        ),
        ...Array.from({ length: 300 }, (_, i) => store.transaction((tx) => tx.appendAudit(event(i, 'api')))),
      ]);
      const all = [...(await store.listAudit({ limit: 10_000 }))].sort((a, b) => a.seq - b.seq);
      assert.equal(all.filter((e) => e.actor === 'gateway').length, 1020);
      assert.equal(all.filter((e) => e.actor === 'api').length, 310);
      assert.deepEqual(
        all.slice(0, 6).map((e) => e.actor),
        ['api', 'gateway', 'gateway', 'api', 'gateway', 'gateway'],
      );
      const verdict = verifyChain(all);
      assert.equal(verdict.ok, true, JSON.stringify(verdict));
      assert.equal(all.at(-1)!.seq, 1330);
    } finally {
      await thread.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('append-only triggers dropped behind the server are restored by the thread and recorded in the trail', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-audit-thread-'));
    const path = join(dir, 'kubevisa.db');
    await (await openSqliteStore({ path })).close();
    // Someone with the file drops a guard while the server runs (a plain connection, not kubevisa's).
    const raw = new DatabaseSync(path);
    raw.exec('DROP TRIGGER audit_events_no_delete');
    raw.close();
    const thread = new SqliteAuditThread({ path });
    try {
      await thread.write([event(1, 'gateway')]);
      await thread.write([event(2, 'gateway')]);
      const store = await openSqliteStore({ path });
      const trail = [...(await store.listAudit({ limit: 10 }))].sort((a, b) => a.seq - b.seq);
      await store.close();
      assert.deepEqual(
        trail.map((e) => e.action),
        ['audit.guards-restored', 'gateway.request', 'gateway.request'],
        'recorded once, before the batch',
      );
      assert.deepEqual(trail[0]?.details.triggers, ['audit_events_no_delete']);
    } finally {
      await thread.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a write it cannot make is reported, the batcher turns unhealthy, keeps the events and recovers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-audit-thread-'));
    const errors: string[] = [];
    // No database at this path yet: the thread cannot open it (no directory), so every write fails.
    const path = join(dir, 'missing', 'kubevisa.db');
    const batcher = new AuditBatcher({
      sink: new SqliteAuditThread({ path }),
      delayMs: 10,
      onError: (e) => errors.push(e.message),
    });
    try {
      batcher.add(event(1, 'gateway'));
      await batcher.flush();
      assert.equal(batcher.healthy, false);
      assert.match(errors[0] ?? '', /cannot open the database/);
      // The disk is back: the kept event is written by the next try.
      await mkdir(join(dir, 'missing'));
      await (await openSqliteStore({ path })).close();
      await batcher.flush();
      assert.equal(batcher.healthy, true);
      const store = await openSqliteStore({ path });
      assert.deepEqual(
        (await store.listAudit({ limit: 10 })).map((e) => e.details.n),
        [1],
      );
      await store.close();
    } finally {
      await batcher.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
