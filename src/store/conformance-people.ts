/**
 * Store conformance of people: persons (from logins), their sessions, and logins in progress.
 * The same on every engine: conformance.ts runs it; it uses only the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  T0,
  MINUTE,
  HOUR,
  isNotFound,
  isConflict,
  login,
  seed,
  withFreshStore,
  type OpenFresh,
} from './conformance-support.ts';

export function peopleConformanceSuite(openFresh: OpenFresh): void {
  const withStore = withFreshStore(openFresh);

  describe('persons', () => {
    test('creates a person from a first login with a p_ id, status active and no roles', () =>
      withStore(async (store) => {
        const person = await store.transaction((tx) => tx.upsertPersonFromLogin(login('Alice@Vendor.example')));
        assert.match(person.id, /^p_[a-z2-7]{26}$/);
        assert.deepEqual(person, {
          id: person.id,
          issuer: 'https://idp.example',
          subject: 'Alice',
          email: 'alice@vendor.example',
          displayName: 'Name of Alice',
          groups: ['staff'],
          roles: [],
          status: 'active',
          createdAt: T0,
          updatedAt: T0,
        });
        assert.deepEqual(await store.getPerson(person.id), person);
      }));

    test('a later login refreshes email, name and groups but keeps id, status, roles and createdAt', () =>
      withStore(async (store) => {
        const first = await store.transaction(async (tx) => {
          const p = await tx.upsertPersonFromLogin(login('alice@vendor.example', 'sub-1'));
          await tx.setPersonRoles(p.id, ['approver'], T0 + 1);
          return tx.setPersonStatus(p.id, 'suspended', T0 + 2);
        });
        const again = await store.transaction((tx) =>
          tx.upsertPersonFromLogin({
            issuer: 'https://idp.example',
            subject: 'sub-1',
            email: 'alice.new@vendor.example',
            displayName: 'Alice N.',
            groups: ['staff', 'oncall'],
            now: T0 + HOUR,
          }),
        );
        assert.deepEqual(again, {
          ...first,
          email: 'alice.new@vendor.example',
          displayName: 'Alice N.',
          groups: ['staff', 'oncall'],
          updatedAt: T0 + HOUR,
        });
        assert.equal(again.status, 'suspended');
        assert.deepEqual(again.roles, ['approver']);
        assert.equal((await store.listPersons()).length, 1);
      }));

    test('finds a person by email (any case) and by issuer and subject; unknown ones are undefined', () =>
      withStore(async (store) => {
        const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
        assert.deepEqual(await store.getPersonByEmail('ALICE@vendor.example'), alice);
        assert.deepEqual(await store.getPersonBySubject('https://idp.example', 'alice'), alice);
        assert.equal(await store.getPersonBySubject('https://other-idp.example', 'alice'), undefined);
        assert.equal(await store.getPersonByEmail('nobody@vendor.example'), undefined);
        assert.equal(await store.getPerson('p_unknown'), undefined);
      }));

    test('refuses a login whose email already belongs to another identity', () =>
      withStore(async (store) => {
        await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example', 'sub-1')));
        await assert.rejects(
          store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example', 'sub-2'))),
          isConflict,
        );
        assert.equal((await store.listPersons()).length, 1);
      }));

    test('sets status and roles, and refuses an unknown person with NotFound', () =>
      withStore(async (store) => {
        const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
        const updated = await store.transaction(async (tx) => {
          await tx.setPersonStatus(alice.id, 'deprovisioned', T0 + MINUTE);
          return tx.setPersonRoles(alice.id, ['admin', 'auditor'], T0 + 2 * MINUTE);
        });
        assert.equal(updated.status, 'deprovisioned');
        assert.deepEqual(updated.roles, ['admin', 'auditor']);
        assert.equal(updated.updatedAt, T0 + 2 * MINUTE);
        await assert.rejects(
          store.transaction((tx) => tx.setPersonStatus('p_nobody', 'active', T0)),
          isNotFound,
        );
        await assert.rejects(
          store.transaction((tx) => tx.setPersonRoles('p_nobody', [], T0)),
          isNotFound,
        );
      }));

    test('lists persons ordered by email', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          await tx.upsertPersonFromLogin(login('carol@vendor.example'));
          await tx.upsertPersonFromLogin(login('alice@vendor.example'));
          await tx.upsertPersonFromLogin(login('bob@vendor.example'));
        });
        assert.deepEqual(
          (await store.listPersons()).map((p) => p.email),
          ['alice@vendor.example', 'bob@vendor.example', 'carol@vendor.example'],
        );
      }));
  });

  describe('sessions', () => {
    test('a session reads back by id and by secret hash; a patch changes, keeps or clears fields', () =>
      withStore(async (store) => {
        const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
        const session = await store.transaction((tx) =>
          tx.insertSession({
            personId: alice.id,
            secretHash: 'hash-1',
            createdAt: T0,
            expiresAt: T0 + 12 * HOUR,
            idpRefreshTokenCiphertext: 'ciphertext',
            idpTokenExpiresAt: T0 + HOUR,
          }),
        );
        assert.match(session.id, /^s_[a-z2-7]{26}$/);
        assert.deepEqual(session, {
          id: session.id,
          personId: alice.id,
          secretHash: 'hash-1',
          createdAt: T0,
          expiresAt: T0 + 12 * HOUR,
          idpRefreshTokenCiphertext: 'ciphertext',
          idpTokenExpiresAt: T0 + HOUR,
        });
        assert.deepEqual(await store.getSession(session.id), session);
        assert.deepEqual(await store.getSessionBySecretHash('hash-1'), session);
        assert.equal(await store.getSessionBySecretHash('hash-2'), undefined);

        const touched = await store.transaction((tx) =>
          tx.updateSession(session.id, { lastUsedAt: T0 + MINUTE, idpTokenExpiresAt: T0 + 2 * HOUR }),
        );
        assert.deepEqual(touched, { ...session, lastUsedAt: T0 + MINUTE, idpTokenExpiresAt: T0 + 2 * HOUR });
        const cleared = await store.transaction((tx) => tx.updateSession(session.id, { idpTokenExpiresAt: null }));
        assert.equal(cleared.idpRefreshTokenCiphertext, 'ciphertext');
        assert.equal('idpTokenExpiresAt' in cleared, false);
        assert.equal(cleared.lastUsedAt, T0 + MINUTE);
        await assert.rejects(
          store.transaction((tx) => tx.updateSession('s_none', { lastUsedAt: T0 })),
          isNotFound,
        );
      }));

    test('the IdP grant changes only by compare-and-set: a caller holding what it read wins once, a stale one never', () =>
      withStore(async (store) => {
        const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
        const session = await store.transaction((tx) =>
          tx.insertSession({
            personId: alice.id,
            secretHash: 'h1',
            createdAt: T0,
            expiresAt: T0 + 12 * HOUR,
            idpRefreshTokenCiphertext: 'sealed-1',
            idpTokenExpiresAt: T0 + HOUR,
          }),
        );
        const read = { idpRefreshTokenCiphertext: 'sealed-1', idpTokenExpiresAt: T0 + HOUR };
        const held = { idpRefreshTokenCiphertext: 'sealed-1', idpTokenExpiresAt: T0 + HOUR + MINUTE };
        // Two callers read the same grant and both try to take it: exactly one does.
        const taken = await Promise.all([
          store.transaction((tx) => tx.swapSessionGrant(session.id, read, held)),
          store.transaction((tx) => tx.swapSessionGrant(session.id, read, held)),
        ]);
        assert.deepEqual(
          taken.sort((a, b) => Number(a) - Number(b)),
          [false, true],
        );
        // The holder stores the renewed grant; a caller still holding the first read cannot write its token back.
        const renewed = { idpRefreshTokenCiphertext: 'sealed-2', idpTokenExpiresAt: T0 + 2 * HOUR };
        assert.equal(await store.transaction((tx) => tx.swapSessionGrant(session.id, held, renewed)), true);
        assert.equal(
          await store.transaction((tx) =>
            tx.swapSessionGrant(session.id, read, { idpRefreshTokenCiphertext: 'sealed-1', idpTokenExpiresAt: null }),
          ),
          false,
        );
        assert.deepEqual(await store.getSession(session.id), { ...session, ...renewed });
        // An expiry the IdP did not give is cleared; a revoked session and an unknown id are never written.
        const open = { idpRefreshTokenCiphertext: 'sealed-3', idpTokenExpiresAt: null };
        assert.equal(await store.transaction((tx) => tx.swapSessionGrant(session.id, renewed, open)), true);
        assert.equal('idpTokenExpiresAt' in ((await store.getSession(session.id)) ?? {}), false);
        await store.transaction((tx) => tx.updateSession(session.id, { idpTokenExpiresAt: T0 + 3 * HOUR }));
        const current = { idpRefreshTokenCiphertext: 'sealed-3', idpTokenExpiresAt: T0 + 3 * HOUR };
        await store.transaction((tx) => tx.revokeSession(session.id, T0 + MINUTE, 'logout'));
        assert.equal(await store.transaction((tx) => tx.swapSessionGrant(session.id, current, renewed)), false);
        assert.equal((await store.getSession(session.id))?.idpRefreshTokenCiphertext, undefined);
        assert.equal(await store.transaction((tx) => tx.swapSessionGrant('s_none', current, renewed)), false);
      }));

    test('refuses a session for an unknown person, or with a taken id or secret hash', () =>
      withStore(async (store) => {
        const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
        const base = { personId: alice.id, secretHash: 'h1', createdAt: T0, expiresAt: T0 + HOUR };
        await store.transaction((tx) => tx.insertSession({ ...base, id: 's_1' }));
        await assert.rejects(
          store.transaction((tx) => tx.insertSession({ ...base, id: 's_1', secretHash: 'h2' })),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertSession({ ...base, id: 's_2' })),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertSession({ ...base, secretHash: 'h3', personId: 'p_ghost' })),
          isNotFound,
        );
      }));

    test('revoking a session records the first time and reason and drops the IdP refresh token', () =>
      withStore(async (store) => {
        const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
        const session = await store.transaction((tx) =>
          tx.insertSession({
            personId: alice.id,
            secretHash: 'h1',
            createdAt: T0,
            expiresAt: T0 + HOUR,
            idpRefreshTokenCiphertext: 'secret-ciphertext',
            idpTokenExpiresAt: T0 + HOUR,
          }),
        );
        const revoked = await store.transaction((tx) => tx.revokeSession(session.id, T0 + MINUTE, 'logout'));
        assert.deepEqual(revoked, {
          id: session.id,
          personId: alice.id,
          secretHash: 'h1',
          createdAt: T0,
          expiresAt: T0 + HOUR,
          revokedAt: T0 + MINUTE,
          revokeReason: 'logout',
        });
        const again = await store.transaction((tx) => tx.revokeSession(session.id, T0 + HOUR, 'offboarded'));
        assert.equal(again.revokedAt, T0 + MINUTE);
        assert.equal(again.revokeReason, 'logout');
        assert.deepEqual(await store.getSessionBySecretHash('h1'), revoked);
        await assert.rejects(
          store.transaction((tx) => tx.revokeSession('s_none', T0, 'x')),
          isNotFound,
        );
      }));

    test("revoking a person's sessions revokes only that person's live ones and counts them", () =>
      withStore(async (store) => {
        const { alice, bob } = await store.transaction(seed);
        await store.transaction(async (tx) => {
          await tx.insertSession({
            id: 's_a1',
            personId: alice.id,
            secretHash: 'a1',
            createdAt: T0,
            expiresAt: T0 + HOUR,
          });
          await tx.insertSession({
            id: 's_a2',
            personId: alice.id,
            secretHash: 'a2',
            createdAt: T0 + 1,
            expiresAt: T0 + HOUR,
          });
          await tx.insertSession({
            id: 's_a3',
            personId: alice.id,
            secretHash: 'a3',
            createdAt: T0 + 2,
            expiresAt: T0 + HOUR,
          });
          await tx.insertSession({
            id: 's_b1',
            personId: bob.id,
            secretHash: 'b1',
            createdAt: T0,
            expiresAt: T0 + HOUR,
          });
          await tx.revokeSession('s_a3', T0 + 5, 'logout');
        });
        const count = await store.transaction((tx) => tx.revokeSessionsOfPerson(alice.id, T0 + MINUTE, 'offboarded'));
        assert.equal(count, 2);
        const sessions = await store.listSessionsOfPerson(alice.id);
        assert.deepEqual(
          sessions.map((s) => [s.id, s.revokedAt, s.revokeReason]),
          [
            ['s_a1', T0 + MINUTE, 'offboarded'],
            ['s_a2', T0 + MINUTE, 'offboarded'],
            ['s_a3', T0 + 5, 'logout'],
          ],
        );
        assert.equal((await store.getSession('s_b1'))?.revokedAt, undefined);
        assert.equal(await store.transaction((tx) => tx.revokeSessionsOfPerson(alice.id, T0 + HOUR, 'again')), 0);
      }));
  });

  describe('pending logins', () => {
    test('a pending login round-trips, is found by lookup key, updated, deleted and expired', () =>
      withStore(async (store) => {
        const device = {
          id: 'device-code-hash',
          kind: 'device',
          lookupKey: 'WDJB-MJHT',
          payload: { codeVerifier: 'v', scope: ['openid', 'email'], approved: false },
          createdAt: T0,
          expiresAt: T0 + 10 * MINUTE,
        };
        const browser = { id: 'browser-1', kind: 'browser', payload: {}, createdAt: T0, expiresAt: T0 + 2 * MINUTE };
        await store.transaction(async (tx) => {
          assert.deepEqual(await tx.insertLogin(device), device);
          await tx.insertLogin(browser);
        });
        assert.deepEqual(await store.getLogin('device-code-hash'), device);
        assert.deepEqual(await store.getLoginByLookupKey('WDJB-MJHT'), device);
        assert.equal(await store.getLoginByLookupKey('XXXX-XXXX'), undefined);

        const updated = await store.transaction((tx) =>
          tx.updateLogin('device-code-hash', {
            payload: { ...device.payload, approved: true },
            expiresAt: T0 + 5 * MINUTE,
          }),
        );
        assert.deepEqual(updated, {
          ...device,
          payload: { ...device.payload, approved: true },
          expiresAt: T0 + 5 * MINUTE,
        });
        await assert.rejects(
          store.transaction((tx) => tx.updateLogin('none', { expiresAt: T0 })),
          isNotFound,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertLogin(device)),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertLogin({ ...device, id: 'other' })),
          isConflict,
        );

        assert.equal(await store.transaction((tx) => tx.deleteExpiredLogins(T0 + 2 * MINUTE)), 1);
        assert.equal(await store.getLogin('browser-1'), undefined);
        assert.equal(await store.transaction((tx) => tx.deleteLogin('device-code-hash')), true);
        assert.equal(await store.transaction((tx) => tx.deleteLogin('device-code-hash')), false);
        assert.equal(await store.getLogin('device-code-hash'), undefined);
      }));
  });
}
