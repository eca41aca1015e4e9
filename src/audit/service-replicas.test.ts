// Checkpoints written by several replicas at once, on a real PostgreSQL: every replica checkpoints when it starts and
// stops, the leader on a timer, and anyone through the API. Checkpoints are one sequence (the database refuses one
// that does not follow the last), so a replica that loses the race reads again instead of failing its start.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openPostgresStore, type PostgresStore } from '../store/postgres/store.ts';
import { createTestDatabase, type TestDatabase } from '../store/postgres/test-database.ts';
import { loadOrCreateCheckpointKey } from './checkpoints.ts';
import { AuditService } from './service.ts';
import { sampleEvent } from './testing.ts';

let database: TestDatabase;
let dir: string;
const stores: PostgresStore[] = [];

before(async () => {
  database = await createTestDatabase('kv_checkpoints');
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-checkpoints-'));
});
after(async () => {
  for (const store of stores) await store.close();
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

test('replicas checkpointing at once all succeed, and the checkpoints are one sequence over the trail', async () => {
  const key = await loadOrCreateCheckpointKey(join(dir, 'audit-checkpoint.key'));
  const replicas: AuditService[] = [];
  for (let i = 0; i < 3; i++) {
    const store = await openPostgresStore({ url: database.url });
    stores.push(store);
    replicas.push(new AuditService({ store, key, latestCheckpointFile: join(dir, `latest-${i}.json`) }));
  }
  const [first] = stores;
  for (let round = 0; round < 5; round++) {
    await first!.transaction(async (tx) => {
      for (let i = 0; i < 3; i++) await tx.appendAudit(sampleEvent(round * 3 + i));
    });
    // As at start-up (checkpointIfMoved on every replica) and through the API (createCheckpoint), all at once.
    const results = await Promise.allSettled(
      replicas.flatMap((replica) => [replica.checkpointIfMoved(), replica.createCheckpoint()]),
    );
    const failed = results.filter((result) => result.status === 'rejected');
    assert.deepEqual(
      failed.map((result) => String((result as PromiseRejectedResult).reason)),
      [],
      `round ${round}: a replica failed to checkpoint`,
    );
  }
  const checkpoints = await first!.listAuditCheckpoints({});
  assert.deepEqual(
    checkpoints.map((checkpoint) => checkpoint.id),
    checkpoints.map((_, index) => index + 1),
  );
  for (let i = 1; i < checkpoints.length; i++) assert.ok(checkpoints[i]!.seq >= checkpoints[i - 1]!.seq);
  assert.equal(checkpoints.at(-1)!.seq, 15, 'the last checkpoint covers the head');
  const verdict = await replicas[1]!.verifyTrail();
  assert.equal(verdict.ok, true, verdict.summary);
});
