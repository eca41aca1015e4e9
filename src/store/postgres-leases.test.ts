/**
 * Leader leases on a real PostgreSQL (migrations 5 and 7): one term at a time under concurrent claims from several
 * stores (as several replicas would hold), epochs that only rise, expiry by the database's clock, an early release,
 * and a term taken early once its holder's presence session is gone.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
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

/** The backend holding `holder`'s presence lock, if any. */
async function presenceBackend(holder: string): Promise<number | undefined> {
  const { rows } = await database.admin(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
       AND objid = (hashtext('${holder}') & 2147483647)::oid`,
  );
  return (rows[0] as { pid: number } | undefined)?.pid;
}

test('a term whose holder is present is kept until it expires; once its presence session dies, one claimant takes it at once', async () => {
  const [a, b, c] = stores as [PostgresStore, PostgresStore, PostgresStore];
  let lost = '';
  const presence = await a.leases.holdPresence!({ holder: 'pa', onLost: (why) => (lost = why) });
  const held = await a.leases.claim({ name: 'presence', holder: 'pa', durationMs: 60_000 });
  assert.deepEqual([held.holder, held.epoch], ['pa', 1]);
  assert.equal(await b.leases.takeable!({ name: 'presence', holder: 'pb' }), false);
  assert.equal((await b.leases.claim({ name: 'presence', holder: 'pb', durationMs: 60_000 })).holder, 'pa');
  // The holder's own view: its term is not takeable by itself.
  assert.equal(await a.leases.takeable!({ name: 'presence', holder: 'pa' }), false);

  // What kill -9 of the holder does to its session: PostgreSQL ends it and drops its locks.
  const pid = await presenceBackend('pa');
  assert.ok(pid !== undefined, 'the presence lock is held');
  await database.admin(`SELECT pg_terminate_backend(${pid})`);
  for (let i = 0; i < 50 && lost === ''; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(lost, 'the connection that shows this process is alive ended');
  assert.equal(await presenceBackend('pa'), undefined);

  assert.equal(await b.leases.takeable!({ name: 'presence', holder: 'pb' }), true);
  const claims = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      [b, c][i % 2]!.leases.claim({ name: 'presence', holder: `p${i}`, durationMs: 60_000 }),
    ),
  );
  // A claim that lost the race may answer the row as its snapshot had it (pa's): only one says it won.
  const winners = claims.filter((term, i) => term.holder === `p${i}`);
  assert.equal(winners.length, 1, `one winner, got ${claims.map((term) => term.holder).join(', ')}`);
  assert.equal(winners[0]!.epoch, 2);
  assert.ok(winners[0]!.remainingMs > 50_000, 'the winner holds a fresh term');
  const { rows } = await database.admin(
    `SELECT holder, epoch::int AS epoch FROM leader_leases WHERE name = 'presence'`,
  );
  assert.deepEqual(rows, [{ holder: winners[0]!.holder, epoch: 2 }]);
  await presence.close();
});

test('a term claimed without presence (a pooler hides session locks) is taken only once it expires', async () => {
  const [a, b] = stores as [PostgresStore, PostgresStore];
  const held = await a.leases.claim({ name: 'absent', holder: 'nopresence', durationMs: 400 });
  assert.equal(held.holder, 'nopresence');
  const { rows } = await database.admin(`SELECT present FROM leader_leases WHERE name = 'absent'`);
  assert.deepEqual(rows, [{ present: false }]);
  assert.equal(await b.leases.takeable!({ name: 'absent', holder: 'other' }), false);
  assert.equal((await b.leases.claim({ name: 'absent', holder: 'other', durationMs: 400 })).holder, 'nopresence');
  await database.admin(`SELECT pg_sleep(0.5)`);
  assert.equal(await b.leases.takeable!({ name: 'absent', holder: 'other' }), true);
  const taken = await b.leases.claim({ name: 'absent', holder: 'other', durationMs: 400 });
  assert.deepEqual([taken.holder, taken.epoch], ['other', 2]);
});

test('a presence is shown once per holder id: a second session cannot hold the same one', async () => {
  const [a, b] = stores as [PostgresStore, PostgresStore];
  const presence = await a.leases.holdPresence!({ holder: 'twice', onLost: () => undefined });
  await assert.rejects(
    b.leases.holdPresence!({ holder: 'twice', onLost: () => undefined }),
    /the presence lock of 'twice' is held by another session/,
  );
  await presence.close();
  assert.equal(await presenceBackend('twice'), undefined);
});

/** The presence key of `holder` in the current schema, as pg_locks shows it to every role of the database. */
async function presenceKey(holder: string): Promise<{ space: number; key: number }> {
  const { rows } = await database.admin(
    `SELECT (hashtext(current_schema() || ':kubevisa-presence') & 2147483647) AS space,
       hashtext('${holder}') & 2147483647 AS key`,
  );
  return rows[0] as { space: number; key: number };
}

test('a term taken while its holder shows presence again is taken with the next epoch, never the same one', async () => {
  const [a, b] = stores as [PostgresStore, PostgresStore];
  await a.leases.claim({ name: 'flicker', holder: 'old', durationMs: 60_000 });
  // The old holder's presence lock comes and goes while others claim (it lost its session and shows presence again
  // at the instant a claim is being decided): a session flips it as fast as the server can.
  const { space, key } = await presenceKey('old');
  const flipper = new pg.Client({ connectionString: database.url });
  flipper.on('error', () => undefined);
  await flipper.connect();
  const flipperPid = (await flipper.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  const flipping = flipper
    .query(
      `DO $$ BEGIN FOR i IN 1..1000000000 LOOP
         PERFORM pg_advisory_lock(${space}, ${key}); PERFORM pg_advisory_unlock(${space}, ${key}); END LOOP; END $$`,
    )
    .catch(() => undefined);
  try {
    let taken = 0;
    for (let i = 0; i < 400 && taken < 40; i++) {
      await database.admin(`UPDATE leader_leases SET holder = 'old', epoch = 7, present = true,
          expires_at = clock_timestamp() + interval '1 minute' WHERE name = 'flicker'`);
      await b.leases.claim({ name: 'flicker', holder: 'new', durationMs: 60_000 });
      const { rows } = await database.admin(
        `SELECT holder, epoch::int AS epoch FROM leader_leases WHERE name = 'flicker'`,
      );
      const row = rows[0] as { holder: string; epoch: number };
      if (row.holder === 'old') continue;
      taken++;
      // The same epoch under a new holder would let the old one's writes through the fence.
      assert.deepEqual(row, { holder: 'new', epoch: 8 }, `claim ${i}: the term changed hands without a new epoch`);
    }
    assert.ok(taken > 0, 'some claim found the lock gone');
  } finally {
    await database.admin(`SELECT pg_terminate_backend(${flipperPid})`);
    await flipping;
    await flipper.end().catch(() => undefined);
  }
});

test('presence shown by another session (another role, a stale session of its own) is not the holder’s: its term is not taken when that lock goes', async () => {
  const [a, b] = stores as [PostgresStore, PostgresStore];
  // Any role that can connect to the database can take any advisory lock, and read every presence key in pg_locks.
  const role = await database.createRole('intruder');
  const url = new URL(database.url);
  url.username = role;
  const intruder = new pg.Client({ connectionString: url.toString() });
  await intruder.connect();
  try {
    const { space, key } = await presenceKey('victim');
    await intruder.query(`SELECT pg_advisory_lock(${space}, ${key})`);
    // The victim cannot show its presence, and so claims without it.
    await assert.rejects(
      a.leases.holdPresence!({ holder: 'victim', onLost: () => undefined }),
      /the presence lock of 'victim' is held by another session/,
    );
    const held = await a.leases.claim({ name: 'forged', holder: 'victim', durationMs: 60_000 });
    assert.equal(held.holder, 'victim');
    const { rows } = await database.admin(`SELECT present FROM leader_leases WHERE name = 'forged'`);
    assert.deepEqual(rows, [{ present: false }], 'the lock seen was the intruder’s, not the victim’s');
    // The intruder lets go: the victim, alive and renewing, must keep its term.
    await intruder.query(`SELECT pg_advisory_unlock(${space}, ${key})`);
    assert.equal(await b.leases.takeable!({ name: 'forged', holder: 'thief' }), false);
    const after = await b.leases.claim({ name: 'forged', holder: 'thief', durationMs: 60_000 });
    assert.deepEqual([after.holder, after.epoch], ['victim', 1]);
  } finally {
    await intruder.end();
  }
});

test('a presence session outlives an idle_session_timeout the database sets: it is ended only when the process ends', async () => {
  // An operator's idle_session_timeout shorter than the heartbeat would end the presence session between two
  // heartbeats, again and again: each time the leader steps down and another replica takes its term.
  const idle = await createTestDatabase('lease_idle');
  const store = await openPostgresStore({ url: idle.url });
  try {
    await idle.admin(`ALTER DATABASE ${idle.name} SET idle_session_timeout = '300ms'`);
    let lost = '';
    const presence = await store.leases.holdPresence!({ holder: 'idle', onLost: (why) => (lost = why) });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(lost, '', 'the presence session was not ended while the process lives');
    await presence.close();
  } finally {
    await store.close();
    await idle.drop();
  }
});
