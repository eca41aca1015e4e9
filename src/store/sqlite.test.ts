import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { verifyChain } from './audit-chain.ts';
import { storeConformanceSuite } from './conformance.ts';
import { PERSISTED_COLUMNS } from './mappers.ts';
import { SQLITE_MIGRATIONS } from './sqlite-schema.ts';
import { DEFAULT_BUSY_TIMEOUT_MS, configureConnection, openSqliteStore, type SqliteStore } from './sqlite.ts';
import type { AuditEvent, Store } from './store.ts';

const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
const temporaryDirectories: string[] = [];
const storePaths = new Map<Store, string>();

after(async () => {
  for (const directory of temporaryDirectories) await rm(directory, { recursive: true, force: true });
});

/** A path to a database file in a new temporary directory, removed when the tests end. */
async function freshPath(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'kubevisa-store-'));
  temporaryDirectories.push(directory);
  return join(directory, 'kubevisa.db');
}

async function openAt(path: string): Promise<SqliteStore> {
  const store = await openSqliteStore({ path, now: () => T0 });
  storePaths.set(store, path);
  return store;
}

/** Runs `body` on a raw connection to `path` (what an operator with the sqlite3 shell could do). */
function raw<T>(path: string, body: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(path);
  try {
    return body(db);
  } finally {
    db.close();
  }
}

storeConformanceSuite('sqlite', async () => openAt(await freshPath()), {
  reopen: async (previous) => {
    const path = storePaths.get(previous);
    assert.ok(path, 'store was not opened by this harness');
    return openAt(path);
  },
});

/** Appends one event in a transaction of its own; returns it as stored. */
async function appendOne(store: Store, action = 'visa.requested'): Promise<AuditEvent> {
  await store.transaction((tx) => tx.appendAudit({ at: T0, actor: 'system', action, outcome: 'ok', details: {} }));
  const [event] = await store.listAudit({ newestFirst: true, limit: 1 });
  assert.ok(event);
  return event;
}

describe('sqlite store', () => {
  test('the connection uses WAL, synchronous=FULL, foreign keys and the busy timeout', async () => {
    const path = await freshPath();
    raw(path, (db) => {
      configureConnection(db, path, DEFAULT_BUSY_TIMEOUT_MS);
      const pragma = (name: string) => Object.values(db.prepare(`PRAGMA ${name}`).get() ?? {})[0];
      assert.equal(pragma('journal_mode'), 'wal');
      assert.equal(pragma('synchronous'), 2, 'synchronous=FULL is 2');
      assert.equal(pragma('foreign_keys'), 1);
      assert.equal(pragma('busy_timeout'), DEFAULT_BUSY_TIMEOUT_MS);
    });
  });

  test('an open store leaves the file in WAL mode', async () => {
    const path = await freshPath();
    const store = await openAt(path);
    try {
      assert.equal(
        raw(path, (db) => db.prepare('PRAGMA journal_mode').get()?.journal_mode),
        'wal',
      );
    } finally {
      await store.close();
    }
  });

  test('migrations are numbered 1..n with distinct names', () => {
    assert.deepEqual(
      SQLITE_MIGRATIONS.map((m) => m.version),
      SQLITE_MIGRATIONS.map((_, i) => i + 1),
    );
    assert.equal(new Set(SQLITE_MIGRATIONS.map((m) => m.name)).size, SQLITE_MIGRATIONS.length);
  });

  test('the first open applies every migration; a reopen applies none and keeps the data', async () => {
    const path = await freshPath();
    const first = await openAt(path);
    assert.deepEqual(
      first.appliedMigrations,
      SQLITE_MIGRATIONS.map((m) => m.version),
    );
    const person = await first.transaction((tx) =>
      tx.upsertPersonFromLogin({
        issuer: 'https://idp.example',
        subject: 'alice',
        email: 'alice@vendor.example',
        displayName: 'Alice',
        groups: [],
        now: T0,
      }),
    );
    await first.close();

    const second = await openAt(path);
    try {
      assert.deepEqual(second.appliedMigrations, []);
      assert.deepEqual(await second.getPerson(person.id), person);
    } finally {
      await second.close();
    }
    const recorded = raw(path, (db) => db.prepare('SELECT version, name, applied_at FROM schema_migrations').all());
    assert.deepEqual(
      recorded.map((row) => ({ ...row })),
      SQLITE_MIGRATIONS.map((m) => ({ version: m.version, name: m.name, applied_at: T0 })),
    );
  });

  test('an older database gets only the migrations it lacks, in order', async () => {
    const path = await freshPath();
    const old = await openSqliteStore({ path, migrations: SQLITE_MIGRATIONS.slice(0, 1) });
    assert.deepEqual(old.appliedMigrations, [1]);
    await old.close();
    const current = await openSqliteStore({ path });
    try {
      assert.deepEqual(
        current.appliedMigrations,
        SQLITE_MIGRATIONS.slice(1).map((m) => m.version),
      );
    } finally {
      await current.close();
    }
  });

  test('a failing migration leaves the database unchanged and the open refused', async () => {
    const path = await freshPath();
    const broken = [
      ...SQLITE_MIGRATIONS,
      { version: SQLITE_MIGRATIONS.length + 1, name: 'broken', sql: 'CREATE TABLE (' },
    ];
    await assert.rejects(openSqliteStore({ path, migrations: broken }), /syntax error/);
    const tables = raw(path, (db) => db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all());
    assert.deepEqual(tables, [], 'all migrations of one open commit together or not at all');
  });

  test('refuses to open a database written by a newer build', async () => {
    const path = await freshPath();
    await (await openSqliteStore({ path })).close();
    raw(path, (db) => {
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        SQLITE_MIGRATIONS.length + 1,
        'from the future',
        T0,
      );
    });
    await assert.rejects(openSqliteStore({ path }), (error: unknown) => {
      assert.equal((error as { code?: unknown }).code, 'ERR_STORE_UNAVAILABLE');
      assert.match((error as Error).message, /newer kubevisa/);
      return true;
    });
  });

  test('a :memory: store works for throwaway use', async () => {
    const store = await openSqliteStore({ path: ':memory:' });
    try {
      await appendOne(store);
      assert.equal((await store.listAudit()).length, 1);
    } finally {
      await store.close();
    }
  });

  test('the visa columns the reconciler and API filter on are indexed', async () => {
    const path = await freshPath();
    await (await openSqliteStore({ path })).close();
    const leading = raw(path, (db) =>
      db
        .prepare("SELECT il.name AS index_name FROM pragma_index_list('visas') AS il")
        .all()
        .map((row) => {
          const first = db.prepare('SELECT name FROM pragma_index_info(?) WHERE seqno = 0').get(String(row.index_name));
          return String(first?.name);
        }),
    );
    for (const column of ['state', 'cluster', 'person_id', 'engagement_id', 'not_after']) {
      assert.ok(leading.includes(column), `an index leads with visas.${column}`);
    }
  });

  test('every field of the persisted domain types has its column', async () => {
    const path = await freshPath();
    await (await openSqliteStore({ path })).close();
    raw(path, (db) => {
      for (const [table, fields] of Object.entries(PERSISTED_COLUMNS)) {
        const columns = db
          .prepare('SELECT name FROM pragma_table_info(?)')
          .all(table)
          .map((row) => row.name);
        for (const [field, column] of Object.entries(fields)) {
          assert.ok(columns.includes(column), `${table}.${column} holds ${field}`);
        }
      }
    });
  });

  test('audit rows cannot be updated or deleted, even with raw SQL', async () => {
    const path = await freshPath();
    const store = await openAt(path);
    await appendOne(store);
    await store.close();
    raw(path, (db) => {
      assert.throws(() => db.exec("UPDATE audit_events SET actor = 'mallory'"), /append-only: UPDATE refused/);
      assert.throws(() => db.exec('DELETE FROM audit_events'), /append-only: DELETE refused/);
      assert.equal(db.prepare('SELECT actor FROM audit_events').get()?.actor, 'system');
    });
  });

  test('a raw insert that does not extend the head of the chain is refused', async () => {
    const path = await freshPath();
    const store = await openAt(path);
    const first = await appendOne(store);
    await store.close();
    raw(path, (db) => {
      const insert = db.prepare(
        'INSERT INTO audit_events (seq, at, actor, action, outcome, details_json, prev_hash, hash) ' +
          "VALUES (?, 0, 'mallory', 'visa.approved', 'ok', '{}', ?, 'x')",
      );
      assert.throws(() => insert.run(5, first.hash), /does not extend the head/);
      assert.throws(() => insert.run(2, '0'.repeat(64)), /does not extend the head/);
      assert.throws(() => insert.run(1, '0'.repeat(64)), /does not extend the head|UNIQUE/);
    });
  });

  test('a byte changed in the database file is pinpointed by verifyChain', async () => {
    const path = await freshPath();
    const store = await openAt(path);
    for (let i = 0; i < 5; i++) await appendOne(store, `action.${i}`);
    await store.close();
    // An attacker with file access can drop the triggers; the chain still tells.
    raw(path, (db) => {
      db.exec('DROP TRIGGER audit_events_no_update');
      db.exec("UPDATE audit_events SET action = 'action.X' WHERE seq = 3");
    });
    const reopened = await openAt(path);
    try {
      const verdict = verifyChain(await reopened.listAudit());
      assert.equal(verdict.ok, false);
      assert.equal(verdict.ok ? undefined : verdict.index, 2);
      assert.equal(verdict.ok ? undefined : verdict.fault, 'hash-mismatch');
    } finally {
      await reopened.close();
    }
  });

  test('transactions on one store run one at a time: no lost update', async () => {
    const store = await openAt(await freshPath());
    try {
      await Promise.all(
        Array.from({ length: 25 }, () =>
          store.transaction(async (tx) => {
            const value = await tx.getSetting('counter');
            await sleep(1);
            await tx.putSetting('counter', (typeof value === 'number' ? value : 0) + 1, T0);
          }),
        ),
      );
      assert.equal(await store.getSetting('counter'), 25);
    } finally {
      await store.close();
    }
  });

  test('a store call from inside its own transaction callback is refused instead of deadlocking', async () => {
    const store = await openAt(await freshPath());
    try {
      await assert.rejects(
        store.transaction(async () => {
          await store.listPersons();
        }),
        /inside its own transaction callback/,
      );
      await assert.rejects(
        store.transaction(async () => store.transaction(async () => 1)),
        /inside its own transaction callback/,
      );
      await assert.rejects(
        store.transaction(async () => store.close()),
        /inside its own transaction callback/,
      );
      // The refused calls left the store usable.
      assert.equal(await store.transaction(async () => 'still works'), 'still works');
    } finally {
      await store.close();
    }
  });

  test('a commit acknowledged to a process that is then killed with SIGKILL is not lost', async () => {
    const path = await freshPath();
    const sqliteModule = pathToFileURL(fileURLToPath(new URL('./sqlite.ts', import.meta.url))).href;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
        import { openSqliteStore } from ${JSON.stringify(sqliteModule)};
        const store = await openSqliteStore({ path: process.env.KUBEVISA_TEST_DB });
        await store.transaction(async (tx) => {
          const person = await tx.upsertPersonFromLogin({ issuer: 'https://idp.example', subject: 'kill', email: 'kill@vendor.example', displayName: 'K', groups: [], now: 1 });
          await tx.insertIntent({ id: 'i_crash', kind: 'rolebinding.create', cluster: 'prod', personId: person.id, payload: {}, createdAt: 1 });
          await tx.appendAudit({ at: 1, actor: 'system', action: 'visa.approved', outcome: 'ok', personId: person.id });
        });
        process.stdout.write('committed\\n');
        setInterval(() => {}, 60_000);
        `,
      ],
      { env: { ...process.env, KUBEVISA_TEST_DB: path }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = once(child, 'exit');
    try {
      await new Promise<void>((resolve, reject) => {
        let stdout = '';
        const deadline = setTimeout(() => reject(new Error(`child never committed; stderr: ${stderr}`)), 20_000);
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          stdout += chunk;
          if (stdout.includes('committed')) {
            clearTimeout(deadline);
            resolve();
          }
        });
        child.once('exit', (code, signal) => {
          clearTimeout(deadline);
          reject(new Error(`child exited (${code ?? signal}) before committing; stderr: ${stderr}`));
        });
      });
      child.kill('SIGKILL');
      const [, signal] = await exited;
      assert.equal(signal, 'SIGKILL');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }

    const store = await openAt(path);
    try {
      const person = await store.getPersonByEmail('kill@vendor.example');
      assert.ok(person, 'the committed person survived');
      assert.deepEqual(
        (await store.listPendingIntents()).map((i) => i.id),
        ['i_crash'],
      );
      const events = await store.listAudit();
      assert.equal(events.length, 1);
      assert.equal(events[0]?.personId, person.id);
      assert.equal(verifyChain(events).ok, true);
    } finally {
      await store.close();
    }
  });
});
