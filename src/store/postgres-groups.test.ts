/**
 * Group commit of `store.transaction` on PostgreSQL (postgres/commit-groups.ts), against the real server: the
 * transactions asked for together share one database transaction and one COMMIT, each in its own savepoint.
 * What must hold: a failing one is refused alone, with its own error (a serialisation failure or deadlock is a
 * Conflict); nobody is answered before the shared COMMIT; a COMMIT that fails refuses every member and keeps
 * nothing; within a group the order of the chain and of the answers is the order of the calls (the tests of one
 * group run with `parallelGroups: 1`); groups run side by side, a group waiting for a row does not hold the
 * chain's lock, and racing updates are refused by the version guards; and with the audit appender and a second
 * process's store writing too, the trail stays one chain holding every acknowledged event.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { Conflict, InvalidInput } from '../domain/errors.ts';
import type { PersonStatus } from '../domain/model.ts';
import { verifyChain } from './audit-chain.ts';
import { auditFixture, seed, T0, visaFixture } from './conformance-support.ts';
import { StoreUnavailable } from './errors.ts';
import { openPostgresStore, type PostgresStore } from './postgres/store.ts';
import { createTestDatabase, type TestDatabase } from './postgres/test-database.ts';
import type { AuditEvent, StoreTx } from './store.ts';

let database: TestDatabase;
let schemas = 0;

before(async () => {
  database = await createTestDatabase('kv_groups');
});
after(async () => {
  await database?.drop();
});

/** A store in a fresh schema of its own; `schema` names it for statements run beside the store. */
async function openFresh(
  options: { maxGroupSize?: number; parallelGroups?: number } = {},
): Promise<{ store: PostgresStore; schema: string }> {
  const schema = `g${++schemas}`;
  await database.admin(`CREATE SCHEMA ${schema}`);
  return { store: await openPostgresStore({ url: database.url, schema, ...options }), schema };
}

/** Runs statements on the test database outside any store. */
async function outside<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

async function trail(store: PostgresStore): Promise<AuditEvent[]> {
  const events = await store.listAudit({ limit: 10000 });
  const verdict = verifyChain(events);
  assert.ok(verdict.ok, verdict.ok ? '' : verdict.message);
  events.forEach((event, index) => assert.equal(event.seq, index + 1, 'the chain has no gap'));
  return events;
}

/** Polls `probe` (a count from pg_stat_activity or pg_locks) until it is positive; fails after 10 s. */
async function until(what: string, probe: string): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 20) {
    const n = await outside(async (client) => Number((await client.query(probe)).rows[0].n));
    if (n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** The audit chain's advisory lock in the test database (class 0x6b76 = 27510), granted or waited for. */
const chainLock = (granted: boolean) =>
  "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 27510 " +
  `AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND granted = ${granted}`;

const marker = (action: string) => (tx: StoreTx) => tx.appendAudit(auditFixture(action));

describe('commit groups on PostgreSQL', () => {
  test('a failing transaction is refused alone: the others of its group commit, in call order, after one COMMIT', async () => {
    const { store } = await openFresh({ parallelGroups: 1 });
    try {
      const { alice } = await store.transaction(seed);
      const ran: string[] = [];
      const answered: string[] = [];
      const member = (name: string, body: (tx: StoreTx) => Promise<unknown>) =>
        store
          .transaction(async (tx) => {
            ran.push(name);
            await tx.appendAudit(auditFixture(`test.${name}`));
            return body(tx);
          })
          .then((value) => {
            // Answered only after the shared COMMIT: by then every member of the group has run.
            assert.deepEqual(ran, ['first', 'throws', 'refused-statement', 'nul', 'last'], `${name} answered early`);
            answered.push(name);
            return value;
          });
      const results = await Promise.allSettled([
        member('first', (tx) => tx.insertVisa(visaFixture('v-first', alice, 'eng-1'))),
        member('throws', async (tx) => {
          await tx.insertVisa(visaFixture('v-throws', alice, 'eng-1'));
          throw new Error('the caller changed its mind');
        }),
        member('refused-statement', async (tx) => {
          await tx.insertVisa(visaFixture('v-refused', alice, 'eng-1'));
          // A value the table's CHECK constraint refuses: PostgreSQL aborts the transaction; the callback goes on.
          await tx.setPersonStatus(alice.id, 'on-holiday' as PersonStatus, T0).catch(() => undefined);
        }),
        member('nul', (tx) => tx.appendAudit(auditFixture('test.nul', { reason: 'a\u0000b' }))),
        member('last', (tx) => tx.insertVisa(visaFixture('v-last', alice, 'eng-1'))),
      ]);
      assert.deepEqual(
        results.map((result) => result.status),
        ['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled'],
      );
      const reason = (index: number) => (results[index] as PromiseRejectedResult).reason as Error;
      assert.equal(reason(1).message, 'the caller changed its mind');
      assert.ok(reason(2) instanceof StoreUnavailable);
      assert.match(reason(2).message, /rolled back because one of its statements failed/);
      assert.ok(reason(3) instanceof InvalidInput);
      assert.match(reason(3).message, /reason contains a NUL character/);
      assert.deepEqual(answered, ['first', 'last']);
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.first', 'test.last'],
      );
      assert.deepEqual(
        (await store.listVisas()).map((visa) => visa.id),
        ['v-first', 'v-last'],
      );
      assert.equal((await store.getPerson(alice.id))?.status, alice.status);
    } finally {
      await store.close();
    }
  });

  test('a serialisation failure or a deadlock refuses only its transaction, as a Conflict', async () => {
    const { store, schema } = await openFresh({ parallelGroups: 1 });
    try {
      // What PostgreSQL raises when concurrent transactions collide, raised on demand by a trigger.
      await database.admin(`
        CREATE FUNCTION ${schema}.collide() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.key = 'serialisation' THEN RAISE EXCEPTION 'collided' USING ERRCODE = 'serialization_failure'; END IF;
          IF NEW.key = 'deadlock' THEN RAISE EXCEPTION 'deadlocked' USING ERRCODE = 'deadlock_detected'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER collide BEFORE INSERT ON ${schema}.settings FOR EACH ROW EXECUTE FUNCTION ${schema}.collide();
      `);
      const put = (key: string) =>
        store.transaction(async (tx) => {
          await tx.appendAudit(auditFixture(`test.${key}`));
          await tx.putSetting(key, key, T0);
        });
      const results = await Promise.allSettled(['a', 'serialisation', 'b', 'deadlock', 'c'].map(put));
      assert.deepEqual(
        results.map((result) => result.status),
        ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled'],
      );
      for (const index of [1, 3]) {
        const error = (results[index] as PromiseRejectedResult).reason as Error;
        assert.ok(error instanceof Conflict, `${error.name}: ${error.message}`);
        assert.match(error.message, /try again/);
      }
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.a', 'test.b', 'test.c'],
      );
      assert.equal(await store.getSetting('serialisation'), undefined);
      assert.equal(await store.getSetting('c'), 'c');
    } finally {
      await store.close();
    }
  });

  test('a COMMIT that fails refuses every member and keeps nothing; the next group starts from the true head', async () => {
    const { store, schema } = await openFresh({ parallelGroups: 1 });
    try {
      await store.transaction(marker('test.before'));
      // A deferred constraint trigger runs at COMMIT: the whole database transaction fails there.
      await database.admin(`
        CREATE FUNCTION ${schema}.refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.key = 'fail-at-commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;
          RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON ${schema}.settings
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${schema}.refuse_at_commit();
      `);
      const put = (key: string) =>
        store.transaction(async (tx) => {
          await tx.putSetting(key, key, T0);
          await tx.appendAudit(auditFixture(`test.${key}`));
        });
      const results = await Promise.allSettled(['x', 'fail-at-commit', 'y'].map(put));
      for (const result of results) {
        assert.equal(result.status, 'rejected');
        assert.ok(result.reason instanceof StoreUnavailable, String(result.reason));
        assert.match((result.reason as Error).message, /could not be committed, so it was not made/);
      }
      assert.equal(await store.getSetting('x'), undefined);
      assert.equal(await store.getSetting('y'), undefined);
      await put('after');
      // trail() checks seq 1..n: the events of the failed group were never in the chain.
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.before', 'test.after'],
      );
    } finally {
      await store.close();
    }
  });

  test('events the database refuses after their transaction returned lose its group, and only its group', async () => {
    const { store, schema } = await openFresh({ parallelGroups: 1 });
    try {
      await store.transaction(marker('test.before'));
      // The events of the group go in after its members returned, with its COMMIT; a trigger refusing one stands
      // in for a database that stops serving at that moment.
      await database.admin(`
        CREATE FUNCTION ${schema}.poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.action = 'test.poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER poison BEFORE INSERT ON ${schema}.audit_events
          FOR EACH ROW EXECUTE FUNCTION ${schema}.poison();
      `);
      const put = (key: string) =>
        store.transaction(async (tx) => {
          await tx.appendAudit(auditFixture(`test.${key}`));
          await tx.putSetting(key, key, T0);
        });
      const results = await Promise.allSettled([put('a'), put('poison'), put('b')]);
      for (const result of results) {
        assert.equal(result.status, 'rejected');
        assert.ok(result.reason instanceof StoreUnavailable, String(result.reason));
        assert.match((result.reason as Error).message, /the database refused the transaction's group \(poisoned\)/);
      }
      // Asked for after the group was lost: a group of its own, which commits.
      await put('after');
      for (const key of ['a', 'poison', 'b']) assert.equal(await store.getSetting(key), undefined, key);
      assert.equal(await store.getSetting('after'), 'after');
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.before', 'test.after'],
      );
    } finally {
      await store.close();
    }
  });

  test("a collision in the group's own statements refuses its members as a Conflict, not as a lost database", async () => {
    const { store, schema } = await openFresh({ parallelGroups: 1 });
    try {
      await store.transaction(marker('test.before'));
      // What PostgreSQL raises when the group's insert at COMMIT collides with concurrent transactions.
      await database.admin(`
        CREATE FUNCTION ${schema}.collide() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.action = 'test.deadlock' THEN RAISE EXCEPTION 'deadlocked' USING ERRCODE = 'deadlock_detected'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER collide BEFORE INSERT ON ${schema}.audit_events FOR EACH ROW EXECUTE FUNCTION ${schema}.collide();
      `);
      const results = await Promise.allSettled(
        ['a', 'deadlock', 'b'].map((key) => store.transaction(marker(`test.${key}`))),
      );
      for (const result of results) {
        assert.equal(result.status, 'rejected');
        assert.ok(result.reason instanceof Conflict, String(result.reason));
        assert.match(
          (result.reason as Error).message,
          /collided with the commit of this one's group \(deadlocked\).*try again/,
        );
      }
      await store.transaction(marker('test.after'));
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.before', 'test.after'],
      );
    } finally {
      await store.close();
    }
  });

  test('a deadlock between a member holding the chain lock and another group at its COMMIT refuses only that member', async () => {
    const { store } = await openFresh({ parallelGroups: 2 });
    try {
      await store.transaction(async (tx) => {
        await tx.putSetting('shared', 0, T0);
        await tx.appendAudit(auditFixture('test.before'));
      });
      let letGo: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (letGo = resolve));
      // A member that appends and reads the trail takes the chain's lock, held until its group commits; then it
      // writes a row the other group has written and not yet committed.
      const reader = store.transaction(async (tx) => {
        await tx.appendAudit(auditFixture('test.reader'));
        await tx.getAuditHead();
        await gate;
        await tx.putSetting('shared', 2, T0);
      });
      await until('the reader holds the chain lock', chainLock(true));
      // Asked for together while the reader's group runs: one group on the other connection. Its first member
      // writes the row; the second is innocent of everything. Their COMMIT waits for the chain's lock.
      const group = [
        store.transaction(async (tx) => {
          await tx.putSetting('shared', 1, T0);
          await tx.appendAudit(auditFixture('test.writer'));
        }),
        store.transaction(marker('test.innocent')),
      ];
      await until("the other group's COMMIT waits for the chain lock", chainLock(false));
      // Now the reader waits for the row that group holds: a cycle PostgreSQL breaks after deadlock_timeout (1 s),
      // aborting the statement that waited longest: the other group's, at its COMMIT.
      letGo();
      const [readerResult, ...groupResults] = await Promise.allSettled([reader, ...group]);
      for (const result of groupResults) {
        assert.equal(result.status, 'fulfilled', result.status === 'rejected' ? String(result.reason) : '');
      }
      assert.equal(readerResult?.status, 'rejected');
      const refusal = (readerResult as PromiseRejectedResult).reason as Error;
      assert.ok(refusal instanceof Conflict, `${refusal.name}: ${refusal.message}`);
      assert.match(refusal.message, /try again/);
      assert.equal(await store.getSetting('shared'), 1);
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.before', 'test.writer', 'test.innocent'],
      );
    } finally {
      await store.close();
    }
  });

  test('a member holding the chain lock waits a bounded time for a row, then only it is refused', async () => {
    const { store, schema } = await openFresh({ parallelGroups: 2 });
    try {
      await store.transaction(async (tx) => {
        await tx.putSetting('held', 0, T0);
        await tx.appendAudit(auditFixture('test.before'));
      });
      // Another session (not kubevisa: nothing PostgreSQL can see as a deadlock) holds the row.
      const holder = new pg.Client({ connectionString: database.url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT * FROM ${schema}.settings WHERE key = 'held' FOR UPDATE`);
        const started = Date.now();
        const reader = store.transaction(async (tx) => {
          await tx.appendAudit(auditFixture('test.reader'));
          await tx.getAuditHead();
          await tx.putSetting('held', 1, T0);
        });
        await until('the reader holds the chain lock', chainLock(true));
        // Every other append in every process waits for the chain's lock meanwhile.
        const other = store.transaction(marker('test.other'));
        // Without a bound the reader would wait as long as the holder likes: the holder lets go after 10 s.
        const letGo = setTimeout(() => void holder.query('ROLLBACK'), 10_000);
        const [readerResult, otherResult] = await Promise.allSettled([reader, other]).finally(() =>
          clearTimeout(letGo),
        );
        assert.equal(
          otherResult?.status,
          'fulfilled',
          otherResult?.status === 'rejected' ? String(otherResult.reason) : '',
        );
        assert.equal(readerResult?.status, 'rejected');
        const refusal = (readerResult as PromiseRejectedResult).reason as Error;
        assert.ok(refusal instanceof Conflict, `${refusal.name}: ${refusal.message}`);
        assert.match(refusal.message, /try again/);
        assert.ok(Date.now() - started < 8000, 'the reader gave up within its lock timeout');
      } finally {
        await holder.query('ROLLBACK');
        await holder.end();
      }
      assert.equal(await store.getSetting('held'), 0);
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.before', 'test.other'],
      );
    } finally {
      await store.close();
    }
  });

  test('groups of at most maxGroupSize follow one another in call order', async () => {
    const { store } = await openFresh({ maxGroupSize: 2, parallelGroups: 1 });
    try {
      const answered: number[] = [];
      await Promise.all(
        Array.from({ length: 7 }, (_, i) =>
          store.transaction((tx) => tx.appendAudit(auditFixture(`test.${i}`))).then(() => answered.push(i)),
        ),
      );
      assert.deepEqual(answered, [0, 1, 2, 3, 4, 5, 6]);
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        answered.map((i) => `test.${i}`),
      );
    } finally {
      await store.close();
    }
  });

  test('groups run side by side: one waiting for a row holds up neither the others nor the chain', async () => {
    const { store, schema } = await openFresh({ parallelGroups: 2 });
    try {
      await store.transaction(async (tx) => {
        await tx.putSetting('busy', 0, T0);
        await tx.appendAudit(auditFixture('test.before'));
      });
      // Another session holds the row until told to let go.
      const holder = new pg.Client({ connectionString: database.url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT * FROM ${schema}.settings WHERE key = 'busy' FOR UPDATE`);
        let blockedAnswered = false;
        const blocked = store
          .transaction(async (tx) => {
            await tx.appendAudit(auditFixture('test.blocked'));
            await tx.putSetting('busy', 1, T0);
          })
          .then(() => (blockedAnswered = true));
        // Wait until the blocked transaction's statement is waiting for the row in the database.
        for (let i = 0; i < 200; i++) {
          const waiting = await outside(
            async (client) =>
              (
                await client.query(
                  "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%settings%'",
                )
              ).rows[0].n,
          );
          if (waiting > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        // The others go through the other group, appending to the chain, while that one waits: the chain's lock
        // is not held by a group before its COMMIT.
        const free = (async () => {
          for (let i = 0; i < 5; i++) {
            await store.transaction(async (tx) => {
              await tx.putSetting(`free-${i}`, i, T0);
              await tx.appendAudit(auditFixture(`test.free.${i}`));
            });
          }
        })();
        let timer: NodeJS.Timeout | undefined;
        const stuck = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('the others waited for the blocked group')), 10_000);
        });
        try {
          await Promise.race([free, stuck]);
        } finally {
          clearTimeout(timer);
        }
        assert.equal(blockedAnswered, false, 'the blocked transaction waited for the row');
        await holder.query('COMMIT');
        await blocked;
      } finally {
        await holder.end();
      }
      assert.equal(await store.getSetting('busy'), 1);
      const actions = (await trail(store)).map((event) => event.action);
      assert.deepEqual(actions, [
        'test.before',
        ...Array.from({ length: 5 }, (_, i) => `test.free.${i}`),
        'test.blocked',
      ]);
    } finally {
      await store.close();
    }
  });

  test('racing updates in groups side by side: the version guard lets one win per version', async () => {
    const { store } = await openFresh({ parallelGroups: 4 });
    try {
      const { alice } = await store.transaction(seed);
      const start = await store.transaction(async (tx) => {
        await tx.appendAudit(auditFixture('test.requested'));
        return tx.insertVisa(visaFixture('v-race', alice, 'eng-1'));
      });
      let current = start;
      let wins = 0;
      for (let round = 0; round < 5; round++) {
        const seen = current;
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) =>
            store.transaction(async (tx) => {
              await tx.appendAudit(auditFixture(`test.round.${round}.${i}`));
              return tx.updateVisa({ ...seen, reason: `round ${round} by ${i}` }, seen.version);
            }),
          ),
        );
        const won = results.filter((result) => result.status === 'fulfilled');
        assert.equal(won.length, 1, `round ${round}: exactly one update of version ${seen.version} wins`);
        for (const result of results) {
          if (result.status === 'rejected') assert.ok(result.reason instanceof Conflict, String(result.reason));
        }
        current = (won[0] as PromiseFulfilledResult<typeof seen>).value;
        assert.equal(current.version, seen.version + 1);
        wins++;
      }
      assert.equal((await store.getVisa('v-race'))?.version, start.version + wins);
      // Only the winners' events are in the chain.
      assert.equal((await trail(store)).length, 1 + wins);
    } finally {
      await store.close();
    }
  });

  test('a transaction reads its own appends and those of the group before it', async () => {
    const { store } = await openFresh({ parallelGroups: 1 });
    try {
      const [, seen] = await Promise.all([
        store.transaction(marker('test.earlier')),
        store.transaction(async (tx) => {
          await tx.appendAudit(auditFixture('test.own'));
          return { head: await tx.getAuditHead(), events: await tx.listAudit() };
        }),
      ]);
      assert.equal(seen.head?.seq, 2);
      assert.deepEqual(
        seen.events.map((event) => event.action),
        ['test.earlier', 'test.own'],
      );
      await trail(store);
    } finally {
      await store.close();
    }
  });

  test('transactions, the audit appender and a second process keep one chain with every acknowledged event', async () => {
    const { store, schema } = await openFresh();
    // Another kubevisa process on the same database: a store with its own pools, commit groups and appender.
    const other = await openPostgresStore({ url: database.url, schema });
    try {
      const acknowledged: AuditEvent[] = [];
      // A transaction's event gets its place in the chain at commit, unseen by the caller: found by its action.
      const acknowledgedActions: string[] = [];
      const writers = [store, other].flatMap((writer, w) => {
        const appender = writer.openAuditAppender();
        return [
          (async () => {
            for (let i = 0; i < 40; i++) {
              await writer.transaction(marker(`test.tx.${w}.${i}`));
              acknowledgedActions.push(`test.tx.${w}.${i}`);
            }
          })(),
          ...Array.from({ length: 8 }, async (_, c) => {
            for (let i = 0; i < 15; i++) {
              acknowledged.push(
                ...(await appender.append([
                  auditFixture(`test.appender.${w}.${c}.${i}`),
                  auditFixture(`test.appender.${w}.${c}.${i}.second`),
                ])),
              );
            }
          }),
        ];
      });
      await Promise.all(writers);
      const events = await trail(store);
      assert.equal(events.length, 2 * 40 + 2 * 8 * 15 * 2);
      const stored = new Map(events.map((event) => [event.seq, event]));
      for (const event of acknowledged) {
        assert.deepEqual(stored.get(event.seq), event, `acknowledged event ${event.seq} is stored as acknowledged`);
      }
      const actions = new Set(events.map((event) => event.action));
      for (const action of acknowledgedActions) assert.ok(actions.has(action), `acknowledged ${action} is stored`);
      const count = await outside(async (client) =>
        Number((await client.query(`SELECT count(*) AS n FROM ${schema}.audit_events`)).rows[0].n),
      );
      assert.equal(count, acknowledged.length + acknowledgedActions.length);
    } finally {
      await other.close();
      await store.close();
    }
  });
});

describe('commit groups on a database whose default isolation is REPEATABLE READ', () => {
  test('groups side by side, the appender and a second process still commit everything in one chain', async () => {
    // An operator's setting for every new session on the database (a database of its own: it would reach the
    // other tests' sessions too). The engine's correctness rests on READ COMMITTED: a statement that waited for
    // the chain's lock must see the appends committed while it waited.
    const repeatable = await createTestDatabase('kv_groups_rr');
    try {
      await repeatable.admin(`ALTER DATABASE ${repeatable.name} SET default_transaction_isolation = 'repeatable read'`);
      assert.equal(
        (await repeatable.admin('SHOW default_transaction_isolation')).rows[0].default_transaction_isolation,
        'repeatable read',
      );
      const store = await openPostgresStore({ url: repeatable.url });
      const other = await openPostgresStore({ url: repeatable.url });
      try {
        const acknowledged: AuditEvent[] = [];
        const committed: string[] = [];
        const writers = [store, other].flatMap((writer, w) => {
          const appender = writer.openAuditAppender();
          return [
            ...Array.from({ length: 4 }, async (_, c) => {
              for (let i = 0; i < 15; i++) {
                const key = `k.${w}.${c}.${i}`;
                await writer.transaction(async (tx) => {
                  await tx.putSetting(key, i, T0);
                  await tx.appendAudit(auditFixture(`test.tx.${key}`));
                });
                committed.push(`test.tx.${key}`);
              }
            }),
            ...Array.from({ length: 4 }, async (_, c) => {
              for (let i = 0; i < 10; i++) {
                acknowledged.push(...(await appender.append([auditFixture(`test.appender.${w}.${c}.${i}`)])));
              }
            }),
          ];
        });
        const results = await Promise.allSettled(writers);
        const refusals = results.flatMap((result) => (result.status === 'rejected' ? [String(result.reason)] : []));
        assert.deepEqual(refusals, [], 'no transaction or append was refused');
        const events = await trail(store);
        assert.equal(events.length, 2 * 4 * 15 + 2 * 4 * 10);
        const stored = new Map(events.map((event) => [event.seq, event]));
        for (const event of acknowledged) assert.deepEqual(stored.get(event.seq), event);
        const actions = new Set(events.map((event) => event.action));
        for (const action of committed) assert.ok(actions.has(action), `acknowledged ${action} is stored`);
      } finally {
        await other.close();
        await store.close();
      }
    } finally {
      await repeatable.drop();
    }
  });
});
