// The SQLite engine's audit guarantees beyond the shared conformance suite: group commit (many transactions,
// one fsync, each acknowledged only once durable), failing closed when the disk refuses writes, and the
// append-only guards of the trail (the connection's authorizer, the triggers, their restoration).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { verifyChain } from './audit-chain.ts';
import { AUDIT_GUARD_TRIGGERS } from './sqlite-schema.ts';
import { installRuntimeGuards, openSqliteStore } from './sqlite.ts';
import type { NewAuditEvent } from './store.ts';

const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
const directories: string[] = [];
after(async () => {
  for (const directory of directories) await rm(directory, { recursive: true, force: true });
});

async function freshPath(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'kubevisa-audit-store-'));
  directories.push(directory);
  return join(directory, 'kubevisa.db');
}

const event = (action: string, details: NewAuditEvent['details'] = {}): NewAuditEvent => ({
  at: T0,
  actor: 'system',
  action,
  outcome: 'ok',
  details,
});

function withRaw<T>(path: string, body: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(path);
  try {
    return body(db);
  } finally {
    db.close();
  }
}

describe('group commit', () => {
  test('transactions asked for together commit together, in call order; a failing one rolls back alone', async () => {
    const store = await openSqliteStore({ path: await freshPath() });
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          store.transaction(async (tx) => {
            await tx.putSetting(`k${i}`, i, T0);
            await tx.appendAudit(event(`action.${i}`, { i }));
            if (i === 7) throw new Error('refused by the domain');
          }),
        ),
      );
      assert.equal(outcomes[7]?.status, 'rejected');
      const events = await store.listAudit();
      assert.deepEqual(
        events.map((e) => e.seq),
        Array.from({ length: 19 }, (_, i) => i + 1),
        'seq 8 was not burnt by the transaction that failed',
      );
      assert.deepEqual(
        events.map((e) => e.action),
        Array.from({ length: 20 }, (_, i) => `action.${i}`).filter((a) => a !== 'action.7'),
      );
      assert.equal(verifyChain(events).ok, true);
      assert.equal(await store.getSetting('k7'), undefined, 'its other writes went with it');
      assert.equal(await store.getSetting('k8'), 8);
    } finally {
      await store.close();
    }
  });

  test('a transaction sees the ones before it in its group; a direct read sees only what is committed', async () => {
    const store = await openSqliteStore({ path: await freshPath() });
    try {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const first = store.transaction(async (tx) => {
        await tx.putSetting('written', 'first', T0);
        await held;
      });
      const second = store.transaction((tx) => tx.getSetting('written'));
      // The first transaction is open (its group cannot commit yet): a direct read must not see its write.
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await store.getSetting('written'), undefined);
      release();
      await first;
      assert.equal(await second, 'first');
      assert.equal(await store.getSetting('written'), 'first');
    } finally {
      await store.close();
    }
  });

  test('with maxGroupSize 1 every transaction commits on its own, with the same results', async () => {
    const store = await openSqliteStore({ path: await freshPath(), maxGroupSize: 1 });
    try {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.transaction((tx) => tx.appendAudit(event(`a${i}`)))),
      );
      assert.equal(verifyChain(await store.listAudit()).ok, true);
      assert.equal((await store.getAuditHead())?.seq, 10);
    } finally {
      await store.close();
    }
  });

  test('refuses a maxGroupSize that is not a whole number >= 1', async () => {
    await assert.rejects(openSqliteStore({ path: ':memory:', maxGroupSize: 0 }), /maxGroupSize/);
  });
});

function hasPrlimit(): boolean {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

describe('failing closed', () => {
  // A real refusal by the kernel, not a mock: RLIMIT_FSIZE 0 on the process holding the store makes every write
  // to any file fail with EFBIG (Node ignores SIGXFSZ), exactly as a full or failing disk refuses a write.
  test(
    'when the disk refuses writes, every transaction of the group fails with 503 and none of it is kept',
    { skip: hasPrlimit() ? false : 'prlimit (util-linux) is not installed' },
    async () => {
      const path = await freshPath();
      const sqliteModule = pathToFileURL(fileURLToPath(new URL('./sqlite.ts', import.meta.url))).href;
      const child = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `
          import { openSqliteStore } from ${JSON.stringify(sqliteModule)};
          import { createInterface } from 'node:readline';
          const store = await openSqliteStore({ path: process.env.KUBEVISA_TEST_DB });
          const append = (action) => store.transaction(async (tx) => {
            await tx.putSetting(action, true, 1);
            await tx.appendAudit({ at: 1, actor: 'system', action, outcome: 'ok' });
            return (await tx.getAuditHead())?.seq;
          });
          const say = (value) => process.stdout.write(JSON.stringify(value) + '\\n');
          const outcome = (promise) => promise.then((seq) => ({ seq }), (error) => ({ code: error.code, status: error.status, message: error.message }));
          say({ before: await append('before') });
          const lines = createInterface({ input: process.stdin });
          let step = 0;
          for await (const _ of lines) {
            step++;
            if (step === 1) say({ during: await Promise.all(['d1', 'd2', 'd3'].map((a) => outcome(append(a)))) });
            if (step === 2) { say({ afterwards: await outcome(append('after')) }); await store.close(); process.exit(0); }
          }
          `,
        ],
        { env: { ...process.env, KUBEVISA_TEST_DB: path }, stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const messages: Record<string, unknown>[] = [];
      let buffered = '';
      const waiters: (() => void)[] = [];
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk;
        let newline: number;
        while ((newline = buffered.indexOf('\n')) !== -1) {
          messages.push(JSON.parse(buffered.slice(0, newline)) as Record<string, unknown>);
          buffered = buffered.slice(newline + 1);
          waiters.shift()?.();
        }
      });
      const next = async (): Promise<Record<string, unknown>> => {
        const deadline = setTimeout(() => child.kill('SIGKILL'), 20_000);
        while (messages.length === 0) {
          if (child.exitCode !== null) throw new Error(`child exited early: ${stderr}`);
          await new Promise<void>((resolve) => {
            waiters.push(resolve);
            child.once('exit', () => resolve());
          });
        }
        clearTimeout(deadline);
        return messages.shift() as Record<string, unknown>;
      };
      try {
        assert.deepEqual(await next(), { before: 1 });
        // Soft limit only: lowering the hard limit could not be undone without CAP_SYS_RESOURCE.
        execFileSync('prlimit', ['--pid', String(child.pid), '--fsize=0:unlimited']);
        child.stdin.write('go\n');
        const during = (await next()).during as { code?: string; status?: number; message?: string }[];
        assert.equal(during.length, 3);
        for (const outcome of during) {
          assert.equal(outcome.code, 'ERR_STORE_UNAVAILABLE', JSON.stringify(outcome));
          assert.equal(outcome.status, 503);
          assert.match(outcome.message ?? '', /could not be made durable/);
        }
        execFileSync('prlimit', ['--pid', String(child.pid), '--fsize=unlimited:unlimited']);
        child.stdin.write('go\n');
        assert.deepEqual(await next(), { afterwards: { seq: 2 } }, 'the store works again once the disk does');
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      const store = await openSqliteStore({ path });
      try {
        const events = await store.listAudit();
        assert.deepEqual(
          events.map((e) => e.action),
          ['before', 'after'],
        );
        assert.equal(verifyChain(events).ok, true);
        for (const refused of ['d1', 'd2', 'd3']) assert.equal(await store.getSetting(refused), undefined);
      } finally {
        await store.close();
      }
    },
  );
});

describe('append-only guards', () => {
  test("the server's connection may not update, delete, drop or alter the audit tables, even with raw SQL", async () => {
    const path = await freshPath();
    await (await openSqliteStore({ path })).close();
    withRaw(path, (db) => {
      installRuntimeGuards(db);
      db.exec(
        "INSERT INTO audit_events (seq, at, actor, action, outcome, details_json, prev_hash, hash) VALUES (1, 0, 'system', 'a', 'ok', '{}', '" +
          '0'.repeat(64) +
          "', 'h')",
      );
      for (const sql of [
        "UPDATE audit_events SET actor = 'mallory'",
        'DELETE FROM audit_events',
        'DROP TABLE audit_events',
        'DROP TRIGGER audit_events_no_update',
        'ALTER TABLE audit_events RENAME TO old_events',
        'DELETE FROM audit_checkpoints',
        'UPDATE audit_checkpoints SET seq = 0',
        'PRAGMA writable_schema = ON',
      ]) {
        assert.throws(() => db.exec(sql), /not authorized/, sql);
      }
      db.exec("UPDATE settings SET value_json = '1' WHERE key = 'none'");
      assert.equal(db.prepare('SELECT count(*) AS n FROM audit_events').get()?.n, 1);
    });
  });

  test('checkpoints are append-only, and must name the trail as it is, even for raw SQL', async () => {
    const path = await freshPath();
    const store = await openSqliteStore({ path });
    await store.transaction((tx) => tx.appendAudit(event('a')));
    const head = (await store.listAudit())[0];
    assert.ok(head);
    await store.transaction((tx) =>
      tx.appendAuditCheckpoint({ at: T0, seq: 1, hash: head.hash, keyId: 'k', signature: 's' }),
    );
    await store.close();
    withRaw(path, (db) => {
      assert.throws(() => db.exec('UPDATE audit_checkpoints SET seq = 0'), /append-only: UPDATE refused/);
      assert.throws(() => db.exec('DELETE FROM audit_checkpoints'), /append-only: DELETE refused/);
      const insert = db.prepare(
        "INSERT INTO audit_checkpoints (id, created_at, seq, hash, key_id, signature) VALUES (?, 0, ?, ?, 'k', 's')",
      );
      assert.throws(() => insert.run(2, 1, 'f'.repeat(64)), /does not match the trail/);
      assert.throws(() => insert.run(2, 0, '0'.repeat(64)), /goes back/);
      assert.throws(() => insert.run(5, 1, head.hash), /does not match the trail or goes back/);
    });
  });

  test('triggers dropped behind the server’s back are recreated at the next open, and reported', async () => {
    const path = await freshPath();
    const first = await openSqliteStore({ path });
    await first.transaction((tx) => tx.appendAudit(event('a')));
    await first.close();
    withRaw(path, (db) => {
      db.exec('DROP TRIGGER audit_events_no_update');
      db.exec('DROP TRIGGER audit_checkpoints_follow_trail');
    });
    const store = await openSqliteStore({ path });
    try {
      assert.deepEqual([...store.restoredGuards].sort(), ['audit_checkpoints_follow_trail', 'audit_events_no_update']);
    } finally {
      await store.close();
    }
    withRaw(path, (db) => {
      assert.throws(() => db.exec("UPDATE audit_events SET actor = 'x'"), /append-only: UPDATE refused/);
    });
    const again = await openSqliteStore({ path });
    assert.deepEqual(again.restoredGuards, []);
    await again.close();
  });

  test('the guards recreated are exactly the triggers the migrations create', async () => {
    const path = await freshPath();
    await (await openSqliteStore({ path })).close();
    const normalise = (sql: string) => sql.replace('IF NOT EXISTS ', '').replace(/\s+/g, ' ').trim();
    withRaw(path, (db) => {
      for (const guard of AUDIT_GUARD_TRIGGERS) {
        const row = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?").get(guard.name);
        assert.ok(row, `the migrations create ${guard.name}`);
        assert.equal(normalise(String(row.sql)), normalise(guard.sql), guard.name);
      }
    });
  });
});
