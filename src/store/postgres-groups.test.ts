/**
 * Group commit of `store.transaction` on PostgreSQL (postgres/commit-groups.ts), against the real server: the
 * transactions asked for together share one database transaction and one COMMIT, each in its own savepoint.
 * What must hold: a failing one is refused alone, with its own error (a serialisation failure or deadlock is a
 * Conflict); nobody is answered before the shared COMMIT; a COMMIT that fails refuses every member and keeps
 * nothing; the order of the chain and of the answers is the order of the calls; and with the audit appender and
 * a second process's store writing too, the trail stays one chain holding every acknowledged event.
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
async function openFresh(options: { maxGroupSize?: number } = {}): Promise<{ store: PostgresStore; schema: string }> {
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

const marker = (action: string) => (tx: StoreTx) => tx.appendAudit(auditFixture(action));

describe('commit groups on PostgreSQL', () => {
  test('a failing transaction is refused alone: the others of its group commit, in call order, after one COMMIT', async () => {
    const { store } = await openFresh();
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
    const { store, schema } = await openFresh();
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
    const { store, schema } = await openFresh();
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
          return tx.appendAudit(auditFixture(`test.${key}`));
        });
      const results = await Promise.allSettled(['x', 'fail-at-commit', 'y'].map(put));
      for (const result of results) {
        assert.equal(result.status, 'rejected');
        assert.ok(result.reason instanceof StoreUnavailable, String(result.reason));
        assert.match((result.reason as Error).message, /could not be committed, so it was not made/);
      }
      assert.equal(await store.getSetting('x'), undefined);
      assert.equal(await store.getSetting('y'), undefined);
      const after = await put('after');
      assert.equal(after.seq, 2, 'the events of the failed group were never in the chain');
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        ['test.before', 'test.after'],
      );
    } finally {
      await store.close();
    }
  });

  test('events the database refuses after their transaction returned lose its group, and only its group', async () => {
    const { store, schema } = await openFresh();
    try {
      await store.transaction(marker('test.before'));
      // The events of a member go in after its callback returned, pipelined ahead of the next member's statements;
      // a trigger refusing one stands in for a database that stops serving at that moment.
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
        assert.match((result.reason as Error).message, /database transaction was lost .*poisoned/);
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

  test('groups of at most maxGroupSize follow one another in call order', async () => {
    const { store } = await openFresh({ maxGroupSize: 2 });
    try {
      const answered: number[] = [];
      const results = await Promise.all(
        Array.from({ length: 7 }, (_, i) =>
          store
            .transaction((tx) => tx.appendAudit(auditFixture(`test.${i}`)))
            .then((event) => {
              answered.push(i);
              return event;
            }),
        ),
      );
      assert.deepEqual(answered, [0, 1, 2, 3, 4, 5, 6]);
      assert.deepEqual(
        results.map((event) => event.seq),
        [1, 2, 3, 4, 5, 6, 7],
      );
      assert.deepEqual(
        (await trail(store)).map((event) => event.action),
        results.map((event) => event.action),
      );
    } finally {
      await store.close();
    }
  });

  test('a transaction reads its own appends and those of the group before it', async () => {
    const { store } = await openFresh();
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
      const writers = [store, other].flatMap((writer, w) => {
        const appender = writer.openAuditAppender();
        return [
          (async () => {
            for (let i = 0; i < 40; i++) {
              acknowledged.push(await writer.transaction(marker(`test.tx.${w}.${i}`)));
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
      const count = await outside(async (client) =>
        Number((await client.query(`SELECT count(*) AS n FROM ${schema}.audit_events`)).rows[0].n),
      );
      assert.equal(count, acknowledged.length);
    } finally {
      await other.close();
      await store.close();
    }
  });
});
