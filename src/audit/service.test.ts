import assert from 'node:assert/strict';
import { copyFile, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, test } from 'node:test';
import { openSqliteStore } from '../store/sqlite.ts';
import { loadOrCreateCheckpointKey, parseCheckpoint } from './checkpoints.ts';
import { AuditTrailRolledBack } from './errors.ts';
import { LATEST_CHECKPOINT_FILE, readLatestCheckpoint } from './latest-file.ts';
import { AuditService } from './service.ts';
import { auditFixture, sampleEvent, type AuditFixture } from './testing.ts';
import type { TrailVerification } from './verdict.ts';

/** What someone with the database file can do: drop the guards and change rows. */
function tamper(fixture: AuditFixture, sql: string[]): void {
  const db = new DatabaseSync(join(fixture.dir, 'kubevisa.db'));
  try {
    db.exec('DROP TRIGGER IF EXISTS audit_events_no_update');
    db.exec('DROP TRIGGER IF EXISTS audit_events_no_delete');
    db.exec('DROP TRIGGER IF EXISTS audit_events_extend_head');
    for (const statement of sql) db.exec(statement);
  } finally {
    db.close();
  }
}

async function withFixture(events: number, body: (fixture: AuditFixture) => Promise<void>): Promise<void> {
  const fixture = await auditFixture({ events });
  try {
    await body(fixture);
  } finally {
    await fixture.close();
  }
}

function faultOf(verdict: TrailVerification) {
  assert.equal(verdict.ok, false, verdict.summary);
  assert.ok(verdict.fault, verdict.summary);
  return { index: verdict.fault.index, seq: verdict.fault.seq, kind: verdict.fault.kind };
}

describe('checkpoints', () => {
  test('are signed over the head, kept in the database and in the file, and only when the trail moved', () =>
    withFixture(12, async ({ service, store, dir }) => {
      const first = await service.createCheckpoint();
      assert.deepEqual(
        { id: first.id, seq: first.seq, hash: first.hash },
        { id: 1, seq: 12, hash: (await store.getAuditHead())?.hash },
      );
      assert.equal(await service.checkpointIfMoved(), undefined, 'nothing new since');
      await store.transaction((tx) => tx.appendAudit(sampleEvent(12)));
      const second = await service.checkpointIfMoved();
      assert.equal(second?.seq, 13);
      assert.deepEqual(await readLatestCheckpoint(join(dir, LATEST_CHECKPOINT_FILE)), parseCheckpoint(second, 'x'));
      assert.deepEqual(
        (await service.listCheckpoints()).map((c) => c.seq),
        [12, 13],
      );
    }));

  test('the signing key file is created 0600 and reused', () =>
    withFixture(0, async ({ dir, service }) => {
      const path = join(dir, 'audit-checkpoint-key.pem');
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await loadOrCreateCheckpointKey(path)).keyId, service.key.keyId);
    }));
});

describe('server-side verification of the database', () => {
  test('an intact trail verifies, every checkpoint matching', () =>
    withFixture(40, async ({ service, store }) => {
      await service.createCheckpoint();
      await store.transaction((tx) => tx.appendAudit(sampleEvent(40)));
      await service.createCheckpoint();
      const verdict = await service.verifyTrail();
      assert.equal(verdict.ok, true, verdict.summary);
      assert.equal(verdict.records, 41);
      assert.deepEqual(
        verdict.checkpoints.map((finding) => finding.status),
        // The database's two, and the file's (the same as the second, so counted once).
        ['matches', 'matches'],
      );
    }));

  test('a changed byte in a row is pinpointed at that event', () =>
    withFixture(30, async (fixture) => {
      tamper(fixture, ["UPDATE audit_events SET actor = 'mallory@vendor.example' WHERE seq = 17"]);
      assert.deepEqual(faultOf(await fixture.service.verifyTrail()), { index: 16, seq: 17, kind: 'hash-mismatch' });
    }));

  test('a changed detail (even one byte of stored JSON) is pinpointed', () =>
    withFixture(30, async (fixture) => {
      tamper(fixture, ["UPDATE audit_events SET details_json = replace(details_json, 'get', 'gex') WHERE seq = 9"]);
      assert.deepEqual(faultOf(await fixture.service.verifyTrail()), { index: 8, seq: 9, kind: 'hash-mismatch' });
    }));

  test('a deleted row is a gap where it was', () =>
    withFixture(30, async (fixture) => {
      tamper(fixture, ['DELETE FROM audit_events WHERE seq = 12']);
      assert.deepEqual(faultOf(await fixture.service.verifyTrail()), { index: 11, seq: 13, kind: 'gap' });
    }));

  test('two rows whose places were swapped are a reorder', () =>
    withFixture(30, async (fixture) => {
      // Swap the contents of seq 20 and 21, keeping the seq numbers in place.
      tamper(fixture, [
        'UPDATE audit_events SET seq = 1000020 WHERE seq = 20',
        'UPDATE audit_events SET seq = 20 WHERE seq = 21',
        'UPDATE audit_events SET seq = 21 WHERE seq = 1000020',
      ]);
      const fault = faultOf(await fixture.service.verifyTrail());
      assert.equal(fault.index, 19);
      assert.ok(['hash-mismatch', 'reorder'].includes(fault.kind), fault.kind);
    }));

  test('a rollback of the database to an older copy is refused at start and reported by verification', () =>
    withFixture(25, async (fixture) => {
      const { dir, service, store } = fixture;
      await service.createCheckpoint();
      const db = join(dir, 'kubevisa.db');
      // A backup taken now: a consistent copy of the file (no writer is mid-transaction).
      await store.close();
      await copyFile(db, join(dir, 'backup.db'));
      const reopened = await openSqliteStore({ path: db });
      const later = new AuditService({
        store: reopened,
        key: service.key,
        latestCheckpointFile: join(dir, LATEST_CHECKPOINT_FILE),
      });
      await reopened.transaction(async (tx) => {
        for (let i = 25; i < 35; i++) await tx.appendAudit(sampleEvent(i));
      });
      await later.createCheckpoint();
      await later.assertNotRolledBack();
      await reopened.close();

      await copyFile(join(dir, 'backup.db'), db);
      for (const suffix of ['-wal', '-shm']) await writeFile(`${db}${suffix}`, '');
      const restored = await openSqliteStore({ path: db });
      fixture.store = restored;
      const afterRestore = new AuditService({
        store: restored,
        key: service.key,
        latestCheckpointFile: join(dir, LATEST_CHECKPOINT_FILE),
      });
      await assert.rejects(afterRestore.assertNotRolledBack(), (error: unknown) => {
        assert.ok(error instanceof AuditTrailRolledBack);
        assert.match(error.message, /ends at seq 25.*up to seq 35.*rolled back/s);
        return true;
      });
      const verdict = await afterRestore.verifyTrail();
      assert.equal(verdict.fault, undefined, 'the older copy is itself a valid chain');
      assert.equal(verdict.ok, false);
      assert.match(verdict.rollback ?? '', /events 26\.\.35 are missing/);
    }));

  test('a checkpoint kept elsewhere catches a rollback even when the checkpoint file went back too', () =>
    withFixture(20, async (fixture) => {
      const kept = await fixture.service.createCheckpoint();
      tamper(fixture, ['DELETE FROM audit_events WHERE seq > 15']);
      // The data folder was restored as a whole: no newer checkpoint file either.
      await rm(join(fixture.dir, LATEST_CHECKPOINT_FILE));
      const verdict = await fixture.service.verifyTrail([parseCheckpoint(JSON.parse(JSON.stringify(kept)), 'kept')]);
      assert.equal(verdict.ok, false);
      assert.ok(verdict.checkpoints.some((finding) => finding.status === 'beyond-trail'));
    }));

  test('failed verifications are reported to the listener', async () => {
    const fixture = await auditFixture({ events: 10 });
    try {
      const failures: string[] = [];
      const watched = new AuditService({
        store: fixture.store,
        key: fixture.service.key,
        latestCheckpointFile: join(fixture.dir, LATEST_CHECKPOINT_FILE),
        onVerificationFailed: (failure) => failures.push(failure.message),
      });
      assert.equal((await watched.verifyTrail()).ok, true);
      assert.deepEqual(failures, []);
      tamper(fixture, ["UPDATE audit_events SET action = 'x' WHERE seq = 4"]);
      assert.equal((await watched.verifyTrail()).ok, false);
      assert.equal(failures.length, 1);
      assert.match(failures[0] ?? '', /seq 4/);
    } finally {
      await fixture.close();
    }
  });

  test('the export of the database verifies offline exactly as the database does', () =>
    withFixture(15, async (fixture) => {
      const path = await fixture.exportTo('trail.jsonl');
      const text = await readFile(path, 'utf8');
      assert.equal(text.split('\n').length - 1, 15);
      const first = JSON.parse(text.split('\n')[0] as string) as Record<string, unknown>;
      assert.deepEqual(Object.keys(first).slice(0, 4), ['seq', 'prevHash', 'hash', 'action']);
    }));
});
