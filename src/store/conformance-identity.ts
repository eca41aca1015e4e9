/**
 * Conformance of the identity-lifecycle records (SCIM users, groups and tokens; offboarding receipts): the same
 * behaviour on every engine. conformance.ts runs it; it only uses the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Conflict, NotFound } from '../domain/errors.ts';
import type { NewScimGroup, NewScimUser, OffboardingRecord, ScimTokenRecord } from './identity-records.ts';
import type { Store } from './store.ts';

const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);

function hasCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof Error, 'expected an Error');
    assert.equal((error as Error & { code?: unknown }).code, code);
    return true;
  };
}
const isNotFound = hasCode(NotFound.code);
const isConflict = hasCode(Conflict.code);

function user(id: string, userName: string, overrides: Partial<NewScimUser> = {}): NewScimUser {
  return {
    id,
    userName,
    externalId: `ext-${id}`,
    email: userName.toLowerCase(),
    displayName: `Name ${id}`,
    active: true,
    resource: {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName,
      name: { givenName: 'Cora', familyName: 'Vendor' },
      emails: [{ value: userName, primary: true, type: 'work' }],
    },
    provisionedBy: 'okta',
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

function group(id: string, displayName: string, members: string[], overrides: Partial<NewScimGroup> = {}) {
  return {
    id,
    displayName,
    members,
    resource: { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName },
    provisionedBy: 'okta',
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  } satisfies NewScimGroup;
}

export function identityConformanceSuite(openFresh: () => Promise<Store>): void {
  async function withStore(body: (store: Store) => Promise<void>): Promise<void> {
    const store = await openFresh();
    try {
      await body(store);
    } finally {
      await store.close();
    }
  }

  describe('identity lifecycle records', () => {
    test('a SCIM user round-trips every field, starts at version 1 and is found by userName in any case', () =>
      withStore(async (store) => {
        const written = user('u1', 'Cora@Vendor.example');
        const stored = await store.transaction((tx) => tx.insertScimUser(written));
        assert.deepEqual(stored, { ...written, email: 'cora@vendor.example', version: 1 });
        assert.deepEqual(await store.getScimUser('u1'), stored);
        assert.deepEqual(await store.getScimUserByUserName('cora@VENDOR.example'), stored);
        assert.deepEqual(await store.listScimUsersByEmail('CORA@vendor.example'), [stored]);
        assert.equal(await store.getScimUser('nope'), undefined);
        const minimal = await store.transaction((tx) =>
          tx.insertScimUser({
            id: 'u2',
            userName: 'bare',
            active: false,
            resource: {},
            provisionedBy: 'entra',
            createdAt: T0 + 1,
            updatedAt: T0 + 1,
          }),
        );
        assert.deepEqual(minimal, {
          id: 'u2',
          userName: 'bare',
          active: false,
          resource: {},
          provisionedBy: 'entra',
          createdAt: T0 + 1,
          updatedAt: T0 + 1,
          version: 1,
        });
        assert.deepEqual(
          (await store.listScimUsers()).map((u) => u.id),
          ['u1', 'u2'],
        );
      }));

    test('users created in the same millisecond list in the order they were created, not by id', () =>
      withStore(async (store) => {
        // Ids are random, so ordering ties by id would shuffle a SCIM page between two reads.
        const ids = ['z9', 'm5', 'a1', 'q7'];
        for (const id of ids) await store.transaction((tx) => tx.insertScimUser(user(id, `${id}@vendor.example`)));
        assert.deepEqual(
          (await store.listScimUsers()).map((u) => u.id),
          ids,
        );
      }));

    test('a userName taken in another case, or a reused id, is a Conflict and writes nothing', () =>
      withStore(async (store) => {
        await store.transaction((tx) => tx.insertScimUser(user('u1', 'cora@vendor.example')));
        await assert.rejects(
          store.transaction((tx) => tx.insertScimUser(user('u2', 'CORA@vendor.example'))),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertScimUser(user('u1', 'other@x'))),
          isConflict,
        );
        await store.transaction((tx) => tx.insertScimUser(user('u3', 'carl@vendor.example')));
        await assert.rejects(
          store.transaction((tx) => tx.updateScimUser(user('u3', 'Cora@vendor.example'))),
          isConflict,
        );
        assert.equal((await store.listScimUsers()).length, 2);
      }));

    test('updating a SCIM user increments its version, keeps createdAt and honours the expected version', () =>
      withStore(async (store) => {
        await store.transaction((tx) => tx.insertScimUser(user('u1', 'cora@vendor.example')));
        const updated = await store.transaction((tx) =>
          tx.updateScimUser(
            user('u1', 'cora@vendor.example', { active: false, createdAt: T0 + 99, updatedAt: T0 + 5 }),
            1,
          ),
        );
        assert.equal(updated.version, 2);
        assert.equal(updated.active, false);
        assert.equal(updated.createdAt, T0);
        assert.equal(updated.updatedAt, T0 + 5);
        await assert.rejects(
          store.transaction((tx) => tx.updateScimUser(user('u1', 'cora@vendor.example'), 1)),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.updateScimUser(user('u9', 'x@y'))),
          isNotFound,
        );
      }));

    test('groups keep member order without duplicates, index membership both ways and refuse unknown members', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          await tx.insertScimUser(user('u1', 'cora@vendor.example'));
          await tx.insertScimUser(user('u2', 'carl@vendor.example'));
        });
        const acme = await store.transaction((tx) =>
          tx.insertScimGroup(group('g1', 'Vendor-Acme', ['u2', 'u1', 'u2'])),
        );
        assert.deepEqual(acme.members, ['u2', 'u1']);
        assert.equal(acme.version, 1);
        await store.transaction((tx) => tx.insertScimGroup(group('g2', 'admins', ['u1'], { createdAt: T0 + 1 })));
        assert.deepEqual(await store.getScimGroupByDisplayName('vendor-acme'), acme);
        assert.deepEqual(
          (await store.listScimGroupsOfUser('u1')).map((g) => g.id),
          ['g1', 'g2'],
        );
        assert.deepEqual(
          (await store.listScimGroupsOfUser('u2')).map((g) => g.id),
          ['g1'],
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertScimGroup(group('g3', 'VENDOR-ACME', []))),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertScimGroup(group('g3', 'ghosts', ['u9']))),
          isNotFound,
        );
        const narrowed = await store.transaction((tx) =>
          tx.updateScimGroup(group('g1', 'Vendor-Acme', ['u1'], { updatedAt: T0 + 7 }), 1),
        );
        assert.deepEqual(narrowed.members, ['u1']);
        assert.equal(narrowed.version, 2);
        assert.deepEqual(await store.listScimGroupsOfUser('u2'), []);
        assert.equal(await store.getScimGroup('g3'), undefined);
      }));

    test('deleting a user removes it from every group and bumps their versions; deleting a group frees its name', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          await tx.insertScimUser(user('u1', 'cora@vendor.example'));
          await tx.insertScimUser(user('u2', 'carl@vendor.example'));
          await tx.insertScimGroup(group('g1', 'acme', ['u1', 'u2']));
        });
        assert.equal(await store.transaction((tx) => tx.deleteScimUser('u1', T0 + 3)), true);
        assert.equal(await store.transaction((tx) => tx.deleteScimUser('u1', T0 + 3)), false);
        const after = await store.getScimGroup('g1');
        assert.deepEqual(after?.members, ['u2']);
        assert.equal(after?.version, 2);
        assert.equal(after?.updatedAt, T0 + 3);
        assert.equal(await store.transaction((tx) => tx.deleteScimGroup('g1')), true);
        assert.equal(await store.transaction((tx) => tx.deleteScimGroup('g1')), false);
        assert.deepEqual(await store.listScimGroupsOfUser('u2'), []);
        await store.transaction((tx) => tx.insertScimGroup(group('g2', 'acme', [])));
      }));

    test('SCIM tokens are stored as given, listed in creation order and keep their first revocation', () =>
      withStore(async (store) => {
        const okta: ScimTokenRecord = {
          id: 't1',
          idp: 'okta',
          secretHash: 'a'.repeat(64),
          createdAt: T0,
          createdBy: 'sam@corp.example',
        };
        assert.deepEqual(await store.transaction((tx) => tx.insertScimToken(okta)), okta);
        await store.transaction((tx) =>
          tx.insertScimToken({ ...okta, id: 't2', idp: 'entra', secretHash: 'b'.repeat(64), createdAt: T0 + 1 }),
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertScimToken({ ...okta, id: 't3' })),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertScimToken({ ...okta, secretHash: 'c'.repeat(64) })),
          isConflict,
        );
        const used = await store.transaction((tx) =>
          tx.updateScimToken('t1', { lastUsedAt: T0 + 5, expiresAt: T0 + 9 }),
        );
        assert.deepEqual(used, { ...okta, lastUsedAt: T0 + 5, expiresAt: T0 + 9 });
        await store.transaction((tx) =>
          tx.updateScimToken('t1', { revokedAt: T0 + 10, revokedBy: 'sam@corp.example' }),
        );
        const again = await store.transaction((tx) =>
          tx.updateScimToken('t1', { revokedAt: T0 + 20, revokedBy: 'eve@corp.example' }),
        );
        assert.equal(again.revokedAt, T0 + 10);
        assert.equal(again.revokedBy, 'sam@corp.example');
        assert.deepEqual(
          (await store.listScimTokens()).map((t) => t.id),
          ['t1', 't2'],
        );
        await assert.rejects(
          store.transaction((tx) => tx.updateScimToken('t9', { lastUsedAt: T0 })),
          isNotFound,
        );
      }));

    test('offboarding receipts round-trip, are replaced on update and filter by person and status', () =>
      withStore(async (store) => {
        const record: OffboardingRecord = {
          id: 'o1',
          personId: 'p_gone',
          status: 'proving',
          trigger: 'scim',
          receipt: { steps: [{ step: 'visas revoked', ok: true }], note: null },
          createdAt: T0,
          updatedAt: T0,
        };
        assert.deepEqual(await store.transaction((tx) => tx.insertOffboarding(record)), record);
        await store.transaction((tx) =>
          tx.insertOffboarding({ ...record, id: 'o2', personId: 'p_other', createdAt: T0 + 1 }),
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertOffboarding(record)),
          isConflict,
        );
        const proven = await store.transaction((tx) =>
          tx.updateOffboarding('o1', { status: 'proven', receipt: { done: true }, updatedAt: T0 + 2 }),
        );
        assert.deepEqual(proven, { ...record, status: 'proven', receipt: { done: true }, updatedAt: T0 + 2 });
        assert.deepEqual(
          (await store.listOffboardings({ statuses: ['proving', 'unproven'] })).map((o) => o.id),
          ['o2'],
        );
        assert.deepEqual(
          (await store.listOffboardings({ personId: 'p_gone' })).map((o) => o.id),
          ['o1'],
        );
        assert.deepEqual(
          (await store.listOffboardings()).map((o) => o.id),
          ['o1', 'o2'],
        );
        assert.deepEqual(await store.listOffboardings({ statuses: [] }), []);
        await assert.rejects(
          store.transaction((tx) => tx.updateOffboarding('o9', { status: 'proven', receipt: {}, updatedAt: T0 })),
          isNotFound,
        );
      }));
  });
}
