import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import type { AccessChange, ChangeListener } from '../store.ts';
import { encodeChange } from '../change-codec.ts';
import { PostgresChangeFeed } from './change-feed.ts';
import { openPostgresStore, type PostgresStore } from './store.ts';
import { createTestDatabase, type TestDatabase } from './test-database.ts';

let database: TestDatabase;
const stores: PostgresStore[] = [];

before(async () => {
  database = await createTestDatabase('fanout_feed');
  await database.admin('CREATE SCHEMA other');
});
after(async () => {
  for (const store of stores) await store.close();
  await database.drop();
});

async function open(schema?: string): Promise<PostgresStore> {
  const store = await openPostgresStore({ url: database.url, ...(schema ? { schema } : {}) });
  stores.push(store);
  return store;
}

/** A listener that records what it hears and lets a test wait for it. */
function recorder() {
  const heard: AccessChange[] = [];
  let missed = 0;
  const waiters: (() => void)[] = [];
  const listener: ChangeListener = {
    change(change) {
      heard.push(change);
      waiters.splice(0).forEach((wake) => wake());
    },
    missed() {
      missed++;
      waiters.splice(0).forEach((wake) => wake());
    },
  };
  return {
    listener,
    heard,
    missed: () => missed,
    async until(done: () => boolean, what: string) {
      const deadline = Date.now() + 10_000;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 50);
        });
      }
    },
  };
}

test('carries changes between processes on one schema, not to itself nor to another schema, and across a killed connection', async () => {
  const [a, b, elsewhere] = [await open(), await open(), await open('other')];
  const [feedA, feedB, feedElsewhere] = [a.openChangeFeed(), b.openChangeFeed(), elsewhere.openChangeFeed()];
  const [atA, atB, atElsewhere] = [recorder(), recorder(), recorder()];
  feedA.subscribe(atA.listener);
  feedB.subscribe(atB.listener);
  feedElsewhere.subscribe(atElsewhere.listener);
  // The first connection reports a gap too: what was sent while caches were filled is lost.
  await atB.until(() => atB.missed() === 1 && atA.missed() === 1 && atElsewhere.missed() === 1, 'the first LISTEN');

  const visaIds = Array.from({ length: 1200 }, (_, i) => `v_${i}_abcdefghijklmnopqrstu`);
  await feedA.publish({ kind: 'visas-ended', visaIds, reason: 'revoked by ann@corp.example' });
  const received = () => atB.heard.flatMap((c) => (c.kind === 'visas-ended' ? c.visaIds : []));
  await atB.until(() => received().length === visaIds.length, 'every ended visa');
  assert.deepEqual(received(), visaIds);
  await feedB.publish({ kind: 'sessions-ended', sessionIds: ['s_1'] });
  await atA.until(() => atA.heard.length === 1, "B's change at A");
  assert.deepEqual(atA.heard, [{ kind: 'sessions-ended', sessionIds: ['s_1'] }]);
  assert.equal(atElsewhere.heard.length, 0, 'another schema hears nothing');

  // An administrator (or a failover) ends B's listening connection: B reconnects, says it may have missed changes,
  // and hears the next ones.
  const killed = await database.admin(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kubevisa-changes:${process.pid}' AND datname = current_database()`,
  );
  assert.ok(killed.rowCount! >= 2);
  await atB.until(() => atB.missed() === 2, 'the gap after the connection was killed');
  atB.heard.length = 0;
  await feedA.publish({ kind: 'person-deprovisioned', personId: 'p_1', reason: 'left' });
  await atB.until(() => atB.heard.length === 1, 'a change after the reconnect');
  assert.deepEqual(atB.heard, [{ kind: 'person-deprovisioned', personId: 'p_1', reason: 'left' }]);
});

test('publishes on its listening connection, so a busy pool does not hold a revocation back; without one, on the pool', async () => {
  const clientConfig = { connectionString: database.url };
  const channel = 'kubevisa_feed_publish_test';
  const poolCalls: unknown[][] = [];
  // A pool whose every connection is taken (audit batches, the reconciler): its queries never run.
  const busy = new PostgresChangeFeed({ clientConfig, channel, query: () => new Promise(() => undefined) });
  const other = new PostgresChangeFeed({
    clientConfig,
    channel,
    query: async (text, values) => void poolCalls.push([text, values]),
  });
  const [atBusy, atOther] = [recorder(), recorder()];
  busy.subscribe(atBusy.listener);
  try {
    const unsubscribed = new PostgresChangeFeed({
      clientConfig,
      channel,
      query: async (...call) => void poolCalls.push(call),
    });
    await unsubscribed.publish({ kind: 'visas-changed' });
    assert.equal(poolCalls.length, 1, 'a feed that does not listen publishes through the pool');
    await unsubscribed.close();
    other.subscribe(atOther.listener);
    await atOther.until(() => atBusy.missed() === 1 && atOther.missed() === 1, 'both listening');
    await busy.publish({ kind: 'visas-ended', visaIds: ['v_1'], reason: 'engagement ended' });
    await atOther.until(() => atOther.heard.length === 1, 'the change from the feed with a busy pool');
    assert.deepEqual(atOther.heard, [{ kind: 'visas-ended', visaIds: ['v_1'], reason: 'engagement ended' }]);
    assert.equal(poolCalls.length, 1);
  } finally {
    await busy.close();
    await other.close();
  }
});

test("with the installation's key, a notification anyone else sends on the channel is dropped and reported; signed ones arrive", async () => {
  const key = Buffer.alloc(32, 1);
  const clientConfig = { connectionString: database.url };
  const channel = 'kubevisa_feed_signed_test';
  // What a role with CONNECT can send: a well-formed change, unsigned, and one signed with another key.
  const outsider = new pg.Client(clientConfig);
  await outsider.connect();
  const send = async (text: string, values: unknown[]) => void (await outsider.query(text, values));
  const reports: string[] = [];
  const receiver = new PostgresChangeFeed({ clientConfig, channel, query: send, key, onError: (m) => reports.push(m) });
  const sender = new PostgresChangeFeed({ clientConfig, channel, query: send, key });
  const otherKey = new PostgresChangeFeed({ clientConfig, channel, query: send, key: Buffer.alloc(32, 2) });
  const at = recorder();
  receiver.subscribe(at.listener);
  try {
    await at.until(() => at.missed() === 1, 'listening');
    await otherKey.publish({ kind: 'sessions-ended', sessionIds: ['s_forged'] });
    const forged = JSON.stringify({ o: 'forged', c: { kind: 'visas-ended', visaIds: ['v_1'], reason: 'forged' } });
    await outsider.query('SELECT pg_notify($1, $2)', [channel, forged]);
    await sender.publish({ kind: 'visas-ended', visaIds: ['v_2'], reason: 'revoked' });
    await at.until(() => at.heard.length === 1, 'the signed change');
    assert.deepEqual(at.heard, [{ kind: 'visas-ended', visaIds: ['v_2'], reason: 'revoked' }]);
    assert.equal(reports.length, 1, 'the drops are reported once, not once each');
    assert.match(
      reports[0]!,
      /^dropped 1 change notification\(s\) on channel kubevisa_feed_signed_test \(not signed with this installation's key, or unreadable\)/,
    );
  } finally {
    await receiver.close();
    await sender.close();
    await otherKey.close();
    await outsider.end();
  }
});

test('a signed notification captured by another role (LISTEN needs no privilege) and sent again, on this channel or another installation sharing the key, is dropped', async () => {
  const key = Buffer.alloc(32, 3);
  const clientConfig = { connectionString: database.url };
  const channel = 'kubevisa_feed_replay_test';
  const elsewhere = 'kubevisa_feed_replay_other';
  const role = await database.createRole('replayer');
  await database.admin(`ALTER ROLE ${role} PASSWORD 'replayer'`);
  const outsiderUrl = new URL(database.url);
  outsiderUrl.username = role;
  outsiderUrl.password = 'replayer';
  // A role with CONNECT only: it listens to the installation's channel and keeps what it hears.
  const outsider = new pg.Client({ connectionString: outsiderUrl.toString() });
  await outsider.connect();
  const captured: string[] = [];
  outsider.on('notification', (message) => void (message.payload !== undefined && captured.push(message.payload)));
  await outsider.query(`LISTEN ${channel}`);
  const send = async (text: string, values: unknown[]) => void (await outsider.query(text, values));
  const reports: string[] = [];
  const receiver = new PostgresChangeFeed({ clientConfig, channel, query: send, key, onError: (m) => reports.push(m) });
  const other = new PostgresChangeFeed({ clientConfig, channel: elsewhere, query: send, key });
  const sender = new PostgresChangeFeed({ clientConfig, channel, query: send, key });
  const [at, atOther] = [recorder(), recorder()];
  receiver.subscribe(at.listener);
  other.subscribe(atOther.listener);
  try {
    await at.until(() => at.missed() === 1 && atOther.missed() === 1, 'listening');
    await sender.publish({ kind: 'visas-changed' });
    await sender.publish({ kind: 'clusters-changed', clusters: ['prod'] });
    await at.until(
      () => at.heard.length === 2 && captured.length === 2,
      'the signed changes, heard by the outsider too',
    );
    // Sent again, many times: each would make every replica re-read its caches (or converge clusters in full).
    const replayed = [...captured];
    for (let i = 0; i < 3; i++) {
      for (const payload of replayed) await outsider.query('SELECT pg_notify($1, $2)', [channel, payload]);
    }
    for (const payload of replayed) await outsider.query('SELECT pg_notify($1, $2)', [elsewhere, payload]);
    // One captured long ago (made here with the key: its number was never heard).
    const [old] = encodeChange('o_gone', { kind: 'visas-changed' }, key, {
      channel,
      at: Date.now() - 6 * 60_000,
      seq: 0,
    });
    await outsider.query('SELECT pg_notify($1, $2)', [channel, old]);
    await sender.publish({ kind: 'sessions-ended', sessionIds: ['s_after'] });
    await at.until(() => at.heard.length >= 3, 'the next signed change');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(at.heard, [
      { kind: 'visas-changed' },
      { kind: 'clusters-changed', clusters: ['prod'] },
      { kind: 'sessions-ended', sessionIds: ['s_after'] },
    ]);
    assert.deepEqual(atOther.heard, [], "another installation's channel does not take this one's notifications");
    assert.equal(reports.length, 1, 'the replays are reported, once');
  } finally {
    await receiver.close();
    await other.close();
    await sender.close();
    await outsider.end();
  }
});
