/**
 * `kubevisa store migrate` end to end: the real CLI copies a SQLite installation (people, an engagement, visas,
 * sessions, audit events and a checkpoint) into an empty PostgreSQL database, and every read gives the same
 * answer afterwards; a second run into the now non-empty database is refused and changes nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { verifyChain } from '../src/store/audit-chain.ts';
import { openPostgresStore } from '../src/store/postgres/store.ts';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';
import type { Store } from '../src/store/store.ts';

const cli = fileURLToPath(new URL('../bin/kubevisa', import.meta.url));
const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
let database: TestDatabase;
let dir: string;

before(async () => {
  database = await createTestDatabase('kv_test_migrate');
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-migrate-'));
});
after(async () => {
  await database.drop();
  await rm(dir, { recursive: true, force: true });
});

function kubevisa(...args: string[]) {
  return spawnSync(cli, args, { encoding: 'utf8', timeout: 120_000 });
}

async function snapshot(store: Store) {
  return {
    persons: await store.listPersons(),
    engagements: await store.listEngagements(),
    visas: await store.listVisas(),
    sessions: await store.listSessionsOfPerson((await store.getPersonByEmail('alice@vendor.example'))?.id ?? ''),
    audit: await store.listAudit({ limit: 10000 }),
    checkpoints: await store.listAuditCheckpoints(),
    settings: await store.getSetting('fencing'),
  };
}

test('kubevisa store migrate moves a SQLite installation into PostgreSQL with the audit chain intact', async () => {
  const path = join(dir, 'data', 'kubevisa.db');
  await import('node:fs/promises').then((fs) => fs.mkdir(join(dir, 'data')));
  const sqlite = await openSqliteStore({ path, now: () => T0 });
  await sqlite.transaction(async (tx) => {
    const alice = await tx.upsertPersonFromLogin({
      issuer: 'https://idp.example',
      subject: 'alice',
      email: 'alice@vendor.example',
      displayName: 'Alice',
      groups: ['contractors'],
      now: T0,
    });
    await tx.insertEngagement({
      id: 'e_1',
      name: 'Payments',
      vendor: 'Vendor Ltd',
      contractors: ['alice@vendor.example'],
      sponsor: 'sam@corp.example',
      startsAt: T0,
      endsAt: T0 + 86_400_000,
      ceiling: { clusters: ['prod'], namespacePatterns: ['payments'], profiles: ['viewer'] },
      maxVisaSeconds: 3600,
      status: 'active',
      createdAt: T0,
      createdBy: 'admin@corp.example',
    });
    for (let i = 0; i < 30; i++) {
      await tx.insertVisa({
        id: `v_${i}`,
        engagementId: 'e_1',
        personId: alice.id,
        personEmail: alice.email,
        cluster: 'prod',
        namespaces: ['payments'],
        profile: 'viewer',
        reason: `JIRA-${i}`,
        requestedAt: T0 + i,
        requestedSeconds: 3600,
        notBefore: T0,
        notAfter: T0 + 3_600_000,
        state: i % 2 === 0 ? 'approved' : 'requested',
        approvals: [],
        requiredApprovals: 1,
      });
      await tx.appendAudit({
        at: T0 + i,
        actor: alice.email,
        action: 'visa.requested',
        visaId: `v_${i}`,
        outcome: 'ok',
        details: { n: i, note: 'ünïcode ✓' },
      });
    }
    await tx.insertSession({ personId: alice.id, secretHash: 'hash-1', createdAt: T0, expiresAt: T0 + 3_600_000 });
    await tx.putSetting('fencing', { token: 7 }, T0);
  });
  const head = await sqlite.getAuditHead();
  assert.ok(head);
  await sqlite.transaction((tx) =>
    tx.appendAuditCheckpoint({ at: T0, seq: head.seq, hash: head.hash, keyId: 'k1', signature: 'sig' }),
  );
  const before = await snapshot(sqlite);
  await sqlite.close();

  const migrated = kubevisa(
    'store',
    'migrate',
    '--from',
    `sqlite:${path}`,
    '--to',
    `postgres:${database.url}`,
    '-o',
    'json',
  );
  assert.equal(migrated.status, 0, migrated.stderr);
  const report = JSON.parse(migrated.stdout) as {
    tables: Record<string, number>;
    audit: { events: number; verified: boolean; head: { seq: number } };
  };
  assert.equal(report.tables.visas, 30);
  assert.equal(report.tables.audit_events, 30);
  assert.equal(report.audit.events, 30);
  assert.equal(report.audit.verified, true);
  assert.equal(report.audit.head.seq, head.seq);
  assert.match(migrated.stderr, /audit_events: 30 rows/, 'progress is shown on stderr');

  const postgres = await openPostgresStore({ url: database.url });
  try {
    const after = await snapshot(postgres);
    assert.deepEqual(after, before);
    assert.equal(verifyChain(after.audit).ok, true);
    // The chain goes on from where SQLite left it.
    await postgres.transaction((tx) =>
      tx.appendAudit({ at: T0, actor: 'system', action: 'store.migrated', outcome: 'ok' }),
    );
    const [next] = await postgres.listAudit({ newestFirst: true, limit: 1 });
    assert.equal(next?.action, 'store.migrated');
    assert.equal(next?.seq, head.seq + 1);
    assert.equal(next?.prevHash, head.hash);
  } finally {
    await postgres.close();
  }

  const again = kubevisa('store', 'migrate', '--from', `sqlite:${path}`, '--to', `postgres:${database.url}`);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already holds kubevisa data .*nothing was copied/);
  const check = await openPostgresStore({ url: database.url });
  try {
    assert.equal((await check.listVisas()).length, 30, 'the refused run changed nothing');
  } finally {
    await check.close();
  }
});

test('kubevisa store migrate refuses a URL with a password in it and a --from that is not sqlite:PATH', () => {
  const withPassword = kubevisa(
    'store',
    'migrate',
    '--from',
    'sqlite:/nonexistent.db',
    '--to',
    'postgres:postgres://kv:secret@127.0.0.1/kv',
  );
  assert.notEqual(withPassword.status, 0);
  assert.match(withPassword.stderr, /must not contain the password/);
  assert.doesNotMatch(withPassword.stderr, /secret/);
  const badFrom = kubevisa('store', 'migrate', '--from', '/var/lib/kubevisa.db', '--to', `postgres:${database.url}`);
  assert.equal(badFrom.status, 2);
  assert.match(badFrom.stderr, /--from must name the SQLite database as sqlite:PATH/);
});

test('kubevisa store migrate refuses a --from file that does not exist, and creates none', async () => {
  const target = await createTestDatabase('kv_test_migrate_typo');
  try {
    const typo = join(dir, 'kubevisa-typo.db');
    const run = kubevisa('store', 'migrate', '--from', `sqlite:${typo}`, '--to', `postgres:${target.url}`);
    assert.equal(run.status, 1, run.stdout + run.stderr);
    assert.match(run.stderr, /there is no SQLite database at .*kubevisa-typo\.db: check --from/);
    const { existsSync } = await import('node:fs');
    assert.equal(existsSync(typo), false, 'the mistyped path was not created');
  } finally {
    await target.drop();
  }
});

test('a column name in the SQLite file never becomes SQL: a file whose columns differ is refused, nothing copied', async () => {
  const target = await createTestDatabase('kv_test_migrate_columns');
  const folder = await mkdtemp(join(tmpdir(), 'kubevisa-migrate-columns-'));
  try {
    const path = join(folder, 'kubevisa.db');
    await (await openSqliteStore({ path, lockFolders: [folder] })).close();
    // A name SQLite reads as harmless, PostgreSQL (which nests block comments) as the rest of an INSERT … SELECT
    // that would store the migrating role's name.
    const crafted =
      '/* /* */ NULL AS x FROM clusters -- */ ca_data) SELECT $1::text, $2::text, $3::text, $4::bigint, ' +
      "$5::bigint, 'ran as ' || current_user WHERE $6::text IS NULL --";
    const { DatabaseSync } = await import('node:sqlite');
    const raw = new DatabaseSync(path);
    raw.exec('ALTER TABLE clusters DROP COLUMN ca_data');
    raw.exec(`ALTER TABLE clusters ADD COLUMN "${crafted.replace(/"/g, '""')}" TEXT`);
    raw.exec("INSERT INTO clusters (name, server, created_at, updated_at) VALUES ('prod', 'https://p:6443', 1, 1)");
    raw.close();

    const run = kubevisa('store', 'migrate', '--from', `sqlite:${path}`, '--to', `postgres:${target.url}`);
    assert.equal(run.status, 1, run.stdout + run.stderr);
    assert.match(
      run.stderr,
      /the SQLite table clusters does not have kubevisa's columns \(unknown: "\/\* \/\* \*\/ NULL.*nothing was copied/,
    );
    const rows = await target.admin('SELECT name, ca_data FROM clusters');
    assert.deepEqual(rows.rows, [], 'nothing was copied, and no SQL from the file ran');
  } finally {
    await target.drop();
    await rm(folder, { recursive: true, force: true });
  }
});
