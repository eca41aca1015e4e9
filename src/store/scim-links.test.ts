/**
 * Which SCIM identity providers may act on the person with an email (scim_links): keyed by lower-cased email and
 * identity provider, listed in creation order, one link per pair. Users provisioned before the table existed keep
 * their identity provider's link.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Conflict } from '../domain/errors.ts';
import type { ScimLinkRecord } from './identity-records.ts';
import { SQLITE_MIGRATIONS } from './sqlite-schema.ts';
import { openSqliteStore } from './sqlite.ts';

const T0 = Date.UTC(2030, 0, 15, 9);
const directories: string[] = [];
after(async () => {
  for (const directory of directories) await rm(directory, { recursive: true, force: true });
});

async function freshPath(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'kubevisa-links-'));
  directories.push(directory);
  return join(directory, 'kubevisa.db');
}

describe('SCIM links in the store', () => {
  test('round-trip with the email lower-cased, list by email or identity provider, one per pair, delete once', async () => {
    const store = await openSqliteStore({ path: await freshPath() });
    try {
      const okta: ScimLinkRecord = {
        email: 'Cora@Vendor.example',
        idp: 'okta',
        how: 'provisioned',
        by: 'scim:okta',
        createdAt: T0,
      };
      const entra: ScimLinkRecord = {
        email: 'cora@vendor.example',
        idp: 'entra',
        how: 'linked',
        by: 'sam@corp.example',
        reason: 'CHG-7: Entra takes over from Okta',
        createdAt: T0 + 1,
      };
      assert.deepEqual(await store.transaction((tx) => tx.insertScimLink(okta)), {
        ...okta,
        email: 'cora@vendor.example',
      });
      await store.transaction((tx) => tx.insertScimLink(entra));
      await store.transaction((tx) =>
        tx.insertScimLink({
          email: 'dana@vendor.example',
          idp: 'okta',
          how: 'claimed',
          by: 'scim:okta',
          createdAt: T0 + 2,
        }),
      );
      assert.deepEqual(await store.listScimLinks({ email: 'CORA@vendor.example' }), [
        { ...okta, email: 'cora@vendor.example' },
        entra,
      ]);
      assert.deepEqual(
        (await store.listScimLinks({ idp: 'okta' })).map((l) => l.email),
        ['cora@vendor.example', 'dana@vendor.example'],
      );
      assert.equal((await store.listScimLinks()).length, 3);
      await assert.rejects(
        store.transaction((tx) => tx.insertScimLink({ ...okta, how: 'linked', by: 'eve@corp.example' })),
        (error: unknown) => error instanceof Conflict,
      );
      assert.equal(await store.transaction((tx) => tx.deleteScimLink('Cora@Vendor.example', 'okta')), true);
      assert.equal(await store.transaction((tx) => tx.deleteScimLink('cora@vendor.example', 'okta')), false);
      assert.deepEqual(await store.listScimLinks({ email: 'cora@vendor.example' }), [entra]);
    } finally {
      await store.close();
    }
  });

  test('users provisioned before links existed keep their identity provider, as migrated links', async () => {
    const path = await freshPath();
    const links = SQLITE_MIGRATIONS.find((m) => m.name === 'identity: which SCIM identity providers act on whom')!;
    const before = SQLITE_MIGRATIONS.filter((m) => m.version < links.version);
    const old = await openSqliteStore({ path, migrations: before });
    await old.transaction(async (tx) => {
      const user = (id: string, userName: string, provisionedBy: string, createdAt: number, email?: string) =>
        tx.insertScimUser({
          id,
          userName,
          ...(email !== undefined ? { email } : {}),
          active: true,
          resource: {},
          provisionedBy,
          createdAt,
          updatedAt: createdAt,
        });
      await user('u1', 'cora@vendor.example', 'okta', T0 + 5, 'cora@vendor.example');
      await user('u2', 'cora-again', 'okta', T0 + 1, 'cora@vendor.example');
      await user('u3', 'cora-at-entra', 'entra', T0 + 9, 'cora@vendor.example');
      await user('u4', 'no-email', 'okta', T0);
    });
    await old.close();
    const current = await openSqliteStore({ path });
    try {
      assert.deepEqual(await current.listScimLinks(), [
        { email: 'cora@vendor.example', idp: 'okta', how: 'migrated', by: 'scim:okta', createdAt: T0 + 1 },
        { email: 'cora@vendor.example', idp: 'entra', how: 'migrated', by: 'scim:entra', createdAt: T0 + 9 },
      ]);
    } finally {
      await current.close();
    }
  });
});
