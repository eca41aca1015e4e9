/**
 * Leader leases on a real PostgreSQL (migration 5): one term at a time under concurrent claims from several stores
 * (as several replicas would hold), epochs that only rise, expiry by the database's clock, and an early release.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { openPostgresStore, type PostgresStore } from './postgres/store.ts';
import { createTestDatabase, type TestDatabase } from './postgres/test-database.ts';

let database: TestDatabase;
const stores: PostgresStore[] = [];

before(async () => {
  database = await createTestDatabase('lease_test');
  for (let i = 0; i < 3; i++) stores.push(await openPostgresStore({ url: database.url }));
});

after(async () => {
  for (const store of stores) await store.close();
  await database.drop();
});

test('one of many concurrent claims wins the term; the rest are told who holds it', async () => {
  const terms = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      stores[i % 3]!.leases.claim({ name: 'race', holder: `replica-${i}`, durationMs: 5000 }),
    ),
  );
  const holders = new Set(terms.map((term) => term.holder));
  assert.equal(holders.size, 1, `every claim sees the same holder, got ${[...holders].join(', ')}`);
  assert.deepEqual(new Set(terms.map((term) => term.epoch)), new Set([1]));
  for (const term of terms) assert.ok(term.remainingMs > 0 && term.remainingMs <= 5000);
});

test('a holder renews its term; an expired term goes to the next claimant with the next epoch, never back down', async () => {
  const [a, b] = stores as [PostgresStore, PostgresStore];
  const first = await a.leases.claim({ name: 'terms', holder: 'a', durationMs: 300 });
  assert.deepEqual([first.holder, first.epoch], ['a', 1]);
  const renewed = await a.leases.claim({ name: 'terms', holder: 'a', durationMs: 300, epoch: 1 });
  assert.deepEqual([renewed.holder, renewed.epoch], ['a', 1]);
  const refused = await b.leases.claim({ name: 'terms', holder: 'b', durationMs: 300 });
  assert.deepEqual([refused.holder, refused.epoch], ['a', 1]);
  // Expiry is the database's: wait until its clock has passed the end of a's term.
  await database.admin(`SELECT pg_sleep(0.4)`);
  const taken = await b.leases.claim({ name: 'terms', holder: 'b', durationMs: 300 });
  assert.deepEqual([taken.holder, taken.epoch], ['b', 2]);
  // a's late renewal of its old term does not bring it back.
  const late = await a.leases.claim({ name: 'terms', holder: 'a', durationMs: 300, epoch: 1 });
  assert.deepEqual([late.holder, late.epoch], ['b', 2]);
  const { rows } = await database.admin(`SELECT holder, epoch::int AS epoch FROM leader_leases WHERE name = 'terms'`);
  assert.deepEqual(rows, [{ holder: 'b', epoch: 2 }]);
});

test('a released term is free at once, and the next holder starts a new epoch', async () => {
  const [a, b] = stores as [PostgresStore, PostgresStore];
  const held = await a.leases.claim({ name: 'release', holder: 'a', durationMs: 60_000 });
  await a.leases.release({ name: 'release', holder: 'a', epoch: held.epoch });
  const next = await b.leases.claim({ name: 'release', holder: 'b', durationMs: 60_000 });
  assert.deepEqual([next.holder, next.epoch], ['b', held.epoch + 1]);
});

test('the answer carries the database clock, for deadlines judged by it', async () => {
  const term = await stores[0]!.leases.claim({ name: 'clock', holder: 'a', durationMs: 1000 });
  const { rows } = await database.admin(`SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8 AS now`);
  const databaseNow = Number((rows[0] as { now: number }).now);
  assert.ok(Math.abs(databaseNow - term.databaseNow) < 5000, `${term.databaseNow} vs ${databaseNow}`);
  assert.equal(stores[0]!.leases.exclusive, false);
});
