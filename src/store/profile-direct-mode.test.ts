/**
 * A profile's `directMode` is stored as written: allowed, denied, or not said (which the credential use case reads
 * as denied). Profiles stored before the column existed read back without it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, test } from 'node:test';
import type { Profile } from '../domain/model.ts';
import { SQLITE_MIGRATIONS } from './sqlite-schema.ts';
import { openSqliteStore } from './sqlite.ts';

const directories: string[] = [];
after(async () => {
  for (const directory of directories) await rm(directory, { recursive: true, force: true });
});

async function freshPath(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'kubevisa-profile-'));
  directories.push(directory);
  return join(directory, 'kubevisa.db');
}

const base: Profile = {
  name: 'viewer',
  description: 'read-only',
  rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get'] }],
  declaredRisks: [],
  maxVisaSeconds: 3600,
  recordSessions: false,
};

describe('profile directMode in the store', () => {
  test('allowed, denied and absent each read back exactly, and an update can clear it', async () => {
    const store = await openSqliteStore({ path: await freshPath() });
    try {
      for (const profile of [
        { ...base, name: 'open', directMode: 'allowed' as const },
        { ...base, name: 'closed', directMode: 'denied' as const },
        { ...base, name: 'silent' },
      ]) {
        assert.deepEqual(await store.transaction((tx) => tx.upsertProfile(profile)), profile);
        assert.deepEqual(await store.getProfile(profile.name), profile);
      }
      await store.transaction((tx) => tx.upsertProfile({ ...base, name: 'open' }));
      assert.equal((await store.getProfile('open'))?.directMode, undefined);
    } finally {
      await store.close();
    }
  });

  test('a profile stored before the column existed reads back without directMode', async () => {
    const path = await freshPath();
    // The database as the build before had it: every migration before this one, none after.
    const directMode = SQLITE_MIGRATIONS.find((migration) => migration.name === 'profiles: direct mode')!;
    const before = SQLITE_MIGRATIONS.filter((migration) => migration.version < directMode.version);
    await (await openSqliteStore({ path, migrations: before })).close();
    // A profile written by the build before, without the column.
    const db = new DatabaseSync(path);
    db.prepare(
      'INSERT INTO profiles (name, description, rules_json, declared_risks_json, max_visa_seconds, record_sessions) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(base.name, base.description, JSON.stringify(base.rules), '[]', base.maxVisaSeconds, 0);
    db.close();
    const current = await openSqliteStore({ path });
    try {
      assert.deepEqual(await current.getProfile('viewer'), base);
    } finally {
      await current.close();
    }
  });

  test('the database refuses a direct_mode value other than allowed or denied', async () => {
    const path = await freshPath();
    await (await openSqliteStore({ path })).close();
    const db = new DatabaseSync(path);
    try {
      assert.throws(
        () =>
          db
            .prepare(
              "INSERT INTO profiles (name, description, rules_json, declared_risks_json, max_visa_seconds, record_sessions, direct_mode) VALUES ('x', 'x', '[]', '[]', 1, 0, 'sometimes')",
            )
            .run(),
        /CHECK constraint failed/,
      );
    } finally {
      db.close();
    }
  });
});
