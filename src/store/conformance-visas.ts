/**
 * Store conformance of visas: versions, filters and the reconciler's queries.
 * The same on every engine: conformance.ts runs it; it uses only the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Conflict } from '../domain/errors.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Person, Visa } from '../domain/model.ts';
import {
  T0,
  MINUTE,
  HOUR,
  DAY,
  isNotFound,
  isConflict,
  engagementFixture,
  visaFixture,
  seed,
  withFreshStore,
  type OpenFresh,
} from './conformance-support.ts';
import type { Store } from './store.ts';

export function visaConformanceSuite(openFresh: OpenFresh): void {
  const withStore = withFreshStore(openFresh);

  describe('visas', () => {
    test('a visa reads back exactly as inserted, with version 1', () =>
      withStore(async (store) => {
        const { alice } = await store.transaction(seed);
        const visa = visaFixture('v1', alice, 'eng-1', {
          state: 'active',
          approvals: [
            { by: 'sam@corp.example', at: T0 + MINUTE, comment: 'ok for the incident' },
            { by: 'auto:staging-viewer', at: T0 + MINUTE, automatic: true },
          ],
          requiredApprovals: 2,
          extends: 'v0',
          decidedAt: T0 + MINUTE,
          decidedBy: 'sam@corp.example',
        });
        const stored = await store.transaction((tx) => tx.insertVisa(visa));
        assert.deepEqual(stored, { ...visa, version: 1 });
        assert.deepEqual(await store.getVisa('v1'), { ...visa, version: 1 });
        assert.equal(await store.getVisa('v-none'), undefined);
      }));

    test('refuses a visa with a taken id (Conflict) or an unknown engagement or person (NotFound)', () =>
      withStore(async (store) => {
        const { alice } = await store.transaction(seed);
        await store.transaction((tx) => tx.insertVisa(visaFixture('v1', alice, 'eng-1')));
        await assert.rejects(
          store.transaction((tx) => tx.insertVisa(visaFixture('v1', alice, 'eng-1'))),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.insertVisa(visaFixture('v2', alice, 'eng-x'))),
          isNotFound,
        );
        const ghost: Person = { ...alice, id: 'p_ghost' };
        await assert.rejects(
          store.transaction((tx) => tx.insertVisa(visaFixture('v3', ghost, 'eng-1'))),
          isNotFound,
        );
        assert.deepEqual(
          (await store.listVisas()).map((v) => v.id),
          ['v1'],
        );
      }));

    test('an update replaces the visa and increments its version', () =>
      withStore(async (store) => {
        const { alice } = await store.transaction(seed);
        const visa = visaFixture('v1', alice, 'eng-1');
        await store.transaction((tx) => tx.insertVisa(visa));
        const approved: Visa = {
          ...visa,
          state: 'approved',
          approvals: [{ by: 'sam@corp.example', at: T0 + MINUTE }],
          decidedAt: T0 + MINUTE,
          decidedBy: 'sam@corp.example',
        };
        assert.deepEqual(await store.transaction((tx) => tx.updateVisa(approved, 1)), { ...approved, version: 2 });
        const revoked: Visa = {
          ...approved,
          state: 'revoked',
          endedAt: T0 + HOUR,
          endedBy: 'sam@corp.example',
          endReason: 'contract ended',
        };
        assert.deepEqual(await store.transaction((tx) => tx.updateVisa(revoked)), { ...revoked, version: 3 });
        assert.deepEqual(await store.getVisa('v1'), { ...revoked, version: 3 });
      }));

    test('an update from a stale version is refused with Conflict and changes nothing', () =>
      withStore(async (store) => {
        const { alice } = await store.transaction(seed);
        const visa = visaFixture('v1', alice, 'eng-1');
        await store.transaction((tx) => tx.insertVisa(visa));
        await store.transaction((tx) => tx.updateVisa({ ...visa, state: 'approved' }, 1));
        await assert.rejects(
          store.transaction((tx) => tx.updateVisa({ ...visa, state: 'denied' }, 1)),
          (error: unknown) => {
            isConflict(error);
            assert.deepEqual((error as Conflict).details, { visaId: 'v1', expectedVersion: 1, currentVersion: 2 });
            return true;
          },
        );
        const stored = await store.getVisa('v1');
        assert.equal(stored?.state, 'approved');
        assert.equal(stored?.version, 2);
      }));

    test('of two concurrent updates from the same version exactly one wins', () =>
      withStore(async (store) => {
        const { alice } = await store.transaction(seed);
        const visa = visaFixture('v1', alice, 'eng-1');
        await store.transaction((tx) => tx.insertVisa(visa));
        const results = await Promise.allSettled([
          store.transaction(async (tx) => {
            await sleep(5);
            return tx.updateVisa({ ...visa, state: 'approved' }, 1);
          }),
          store.transaction(async (tx) => {
            await sleep(5);
            return tx.updateVisa({ ...visa, state: 'denied' }, 1);
          }),
        ]);
        const fulfilled = results.filter((r) => r.status === 'fulfilled');
        const rejected = results.filter((r) => r.status === 'rejected');
        assert.equal(fulfilled.length, 1);
        assert.equal(rejected.length, 1);
        assert.ok(rejected[0] !== undefined && isConflict(rejected[0].reason));
        assert.equal((await store.getVisa('v1'))?.version, 2);
      }));

    test('updating an unknown visa is NotFound', () =>
      withStore(async (store) => {
        const { alice } = await store.transaction(seed);
        await assert.rejects(
          store.transaction((tx) => tx.updateVisa(visaFixture('v9', alice, 'eng-1'))),
          isNotFound,
        );
        await assert.rejects(
          store.transaction((tx) => tx.updateVisa(visaFixture('v9', alice, 'eng-1'), 1)),
          isNotFound,
        );
      }));

    test('updateVisas replaces many visas in one call, in the order given, each version incremented', () =>
      withStore(async (store) => {
        const { alice, bob } = await store.transaction(seed);
        const [v1, v2, v3] = [
          visaFixture('v1', alice, 'eng-1', { state: 'approved' }),
          visaFixture('v2', bob, 'eng-1', { state: 'requested' }),
          visaFixture('v3', alice, 'eng-1', { state: 'approved', extends: 'v1' }),
        ];
        await store.transaction(async (tx) => {
          for (const visa of [v1, v2, v3]) await tx.insertVisa(visa);
        });
        await store.transaction((tx) => tx.updateVisa({ ...v3, notAfter: T0 + DAY }, 1));
        const ended = { endedAt: T0 + HOUR, endedBy: 'sam@corp.example', endReason: 'engagement ended' };
        const revoked3: Visa = { ...v3, notAfter: T0 + DAY, state: 'revoked', ...ended };
        const cancelled2: Visa = { ...v2, state: 'cancelled', namespaces: ['billing'], ...ended };
        const revoked1: Visa = { ...v1, state: 'revoked', ...ended };
        const saved = await store.transaction((tx) =>
          tx.updateVisas([
            { visa: revoked3, expectedVersion: 2 },
            { visa: cancelled2 },
            { visa: revoked1, expectedVersion: 1 },
          ]),
        );
        assert.deepEqual(saved, [
          { ...revoked3, version: 3 },
          { ...cancelled2, version: 2 },
          { ...revoked1, version: 2 },
        ]);
        assert.deepEqual(await store.listVisas({ ids: ['v1', 'v2', 'v3'] }), [
          { ...revoked1, version: 2 },
          { ...cancelled2, version: 2 },
          { ...revoked3, version: 3 },
        ]);
        assert.deepEqual(await store.transaction((tx) => tx.updateVisas([])), []);
      }));

    test('updateVisas with one stale version or unknown visa is refused as updateVisa would and keeps none', () =>
      withStore(async (store) => {
        const { alice, bob } = await store.transaction(seed);
        const v1 = visaFixture('v1', alice, 'eng-1', { state: 'approved' });
        const v2 = visaFixture('v2', bob, 'eng-1', { state: 'approved' });
        await store.transaction(async (tx) => {
          await tx.insertVisa(v1);
          await tx.insertVisa(v2);
        });
        await store.transaction((tx) => tx.updateVisa({ ...v2, reason: 'changed' }, 1));
        await assert.rejects(
          store.transaction((tx) =>
            tx.updateVisas([
              { visa: { ...v1, state: 'revoked' }, expectedVersion: 1 },
              { visa: { ...v2, state: 'revoked' }, expectedVersion: 1 },
            ]),
          ),
          (error: unknown) => {
            isConflict(error);
            assert.deepEqual((error as Conflict).details, { visaId: 'v2', expectedVersion: 1, currentVersion: 2 });
            return true;
          },
        );
        await assert.rejects(
          store.transaction((tx) =>
            tx.updateVisas([{ visa: { ...v1, state: 'revoked' } }, { visa: visaFixture('v9', alice, 'eng-1') }]),
          ),
          isNotFound,
        );
        await assert.rejects(
          store.transaction((tx) =>
            tx.updateVisas([{ visa: { ...v1, engagementId: 'eng-404', state: 'revoked' }, expectedVersion: 1 }]),
          ),
          isNotFound,
        );
        await assert.rejects(
          store.transaction((tx) => tx.updateVisas([{ visa: v1 }, { visa: { ...v1, state: 'revoked' } }])),
          /every visa may appear once/,
        );
        assert.deepEqual(
          (await store.listVisas({ ids: ['v1', 'v2'] })).map((v) => [v.id, v.state, v.version]),
          [
            ['v1', 'approved', 1],
            ['v2', 'approved', 2],
          ],
        );
      }));

    test('filters visas by state, states, person, engagement and cluster, combined with AND', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          const { alice, bob } = await seed(tx);
          await tx.insertEngagement(engagementFixture('eng-2'));
          await tx.insertVisa(visaFixture('v1', alice, 'eng-1', { state: 'active', requestedAt: T0 + 1 }));
          await tx.insertVisa(
            visaFixture('v2', alice, 'eng-2', { state: 'requested', requestedAt: T0 + 2, cluster: 'staging' }),
          );
          await tx.insertVisa(
            visaFixture('v3', bob, 'eng-1', { state: 'active', requestedAt: T0 + 3, cluster: 'staging' }),
          );
          await tx.insertVisa(visaFixture('v4', bob, 'eng-1', { state: 'revoked', requestedAt: T0 + 4 }));
        });
        const alice = await store.getPersonByEmail('alice@vendor.example');
        assert.ok(alice);
        const ids = async (filter: Parameters<Store['listVisas']>[0]) =>
          (await store.listVisas(filter)).map((v) => v.id);
        assert.deepEqual(await ids({}), ['v1', 'v2', 'v3', 'v4']);
        assert.deepEqual(await ids({ state: 'active' }), ['v1', 'v3']);
        assert.deepEqual(await ids({ states: ['requested', 'revoked'] }), ['v2', 'v4']);
        assert.deepEqual(await ids({ states: [] }), []);
        assert.deepEqual(await ids({ personId: alice.id }), ['v1', 'v2']);
        assert.deepEqual(await ids({ engagementId: 'eng-2' }), ['v2']);
        assert.deepEqual(await ids({ cluster: 'staging' }), ['v2', 'v3']);
        assert.deepEqual(await ids({ cluster: 'staging', state: 'active' }), ['v3']);
        assert.deepEqual(await ids({ personId: alice.id, states: ['active', 'revoked'], cluster: 'prod' }), ['v1']);
        assert.deepEqual(await ids({ ids: ['v4', 'v2', 'nope'] }), ['v2', 'v4']);
        assert.deepEqual(await ids({ ids: [] }), []);
        assert.deepEqual(await ids({ ids: ['v1', 'v2'], state: 'active' }), ['v1']);
      }));

    test('lists the visas granting at an instant: approved or active and notBefore <= now < notAfter', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          const { alice } = await seed(tx);
          const window = { notBefore: T0, notAfter: T0 + HOUR };
          await tx.insertVisa(visaFixture('active', alice, 'eng-1', { ...window, state: 'active' }));
          await tx.insertVisa(
            visaFixture('approved', alice, 'eng-1', { ...window, state: 'approved', notAfter: T0 + 2 * HOUR }),
          );
          await tx.insertVisa(visaFixture('requested', alice, 'eng-1', { ...window, state: 'requested' }));
          await tx.insertVisa(visaFixture('revoked', alice, 'eng-1', { ...window, state: 'revoked' }));
          await tx.insertVisa(
            visaFixture('later', alice, 'eng-1', {
              state: 'approved',
              notBefore: T0 + HOUR,
              notAfter: T0 + 3 * HOUR,
            }),
          );
        });
        const ids = async (now: number) => (await store.listVisasGrantingAt(now)).map((v) => v.id);
        assert.deepEqual(await ids(T0 - 1), []);
        assert.deepEqual(await ids(T0), ['active', 'approved']);
        assert.deepEqual(await ids(T0 + HOUR - 1), ['active', 'approved']);
        // notAfter is exclusive and notBefore inclusive: at T0 + 1 h one visa ends and another begins.
        assert.deepEqual(await ids(T0 + HOUR), ['approved', 'later']);
        assert.deepEqual(await ids(T0 + 3 * HOUR), []);
      }));

    test('lists visas in given states and those ending by a deadline, soonest first', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          const { alice } = await seed(tx);
          await tx.insertVisa(visaFixture('a3', alice, 'eng-1', { state: 'active', notAfter: T0 + 3 * HOUR }));
          await tx.insertVisa(visaFixture('a1', alice, 'eng-1', { state: 'active', notAfter: T0 + 1 * HOUR }));
          await tx.insertVisa(visaFixture('p2', alice, 'eng-1', { state: 'approved', notAfter: T0 + 2 * HOUR }));
          await tx.insertVisa(visaFixture('x0', alice, 'eng-1', { state: 'expired', notAfter: T0 }));
        });
        const ids = (list: { id: string }[]) => list.map((v) => v.id);
        assert.deepEqual(ids(await store.listVisasInStates(['approved', 'active'])), ['a1', 'p2', 'a3']);
        assert.deepEqual(ids(await store.listVisasInStates(['expired'])), ['x0']);
        assert.deepEqual(ids(await store.listVisasInStates([])), []);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + HOUR - 1)), []);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + 2 * HOUR)), ['a1', 'p2']);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + 2 * HOUR, { states: ['active'] })), ['a1']);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + DAY, { states: ['expired', 'active'] })), [
          'x0',
          'a1',
          'a3',
        ]);
      }));

    test('lists the visas of one cluster that have ended by a deadline, and finds the next deadline', () =>
      withStore(async (store) => {
        assert.equal(await store.nextVisaDeadlineAfter(T0), undefined, 'no visa, no deadline');
        await store.transaction(async (tx) => {
          const { alice } = await seed(tx);
          const at = (start: number, end: number) => ({ notBefore: T0 + start * HOUR, notAfter: T0 + end * HOUR });
          await tx.insertVisa(visaFixture('prod-1', alice, 'eng-1', { state: 'active', ...at(0, 1) }));
          await tx.insertVisa(visaFixture('prod-3', alice, 'eng-1', { state: 'active', ...at(0, 3) }));
          await tx.insertVisa(
            visaFixture('stage-2', alice, 'eng-1', { state: 'active', cluster: 'stage', ...at(0, 2) }),
          );
          await tx.insertVisa(visaFixture('later', alice, 'eng-1', { state: 'approved', ...at(4, 5) }));
          // Not live: their deadlines are nobody's.
          await tx.insertVisa(visaFixture('revoked', alice, 'eng-1', { state: 'revoked', ...at(0, 0.5) }));
          await tx.insertVisa(visaFixture('asked', alice, 'eng-1', { state: 'requested', ...at(0.25, 0.75) }));
        });
        const ids = (list: { id: string }[]) => list.map((v) => v.id);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + 3 * HOUR, { cluster: 'prod' })), [
          'prod-1',
          'prod-3',
        ]);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + 2 * HOUR, { cluster: 'stage' })), ['stage-2']);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + 2 * HOUR, { cluster: 'none' })), []);
        assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + DAY, { cluster: 'prod', states: [] })), []);
        // Strictly after t: a deadline at t itself is due, not next.
        assert.equal(await store.nextVisaDeadlineAfter(T0 - 1), T0, 'the start of an active visa is a deadline too');
        assert.equal(await store.nextVisaDeadlineAfter(T0), T0 + HOUR);
        assert.equal(await store.nextVisaDeadlineAfter(T0 + HOUR), T0 + 2 * HOUR);
        assert.equal(await store.nextVisaDeadlineAfter(T0 + 3 * HOUR), T0 + 4 * HOUR, 'a start counts');
        assert.equal(await store.nextVisaDeadlineAfter(T0 + 4 * HOUR), T0 + 5 * HOUR);
        assert.equal(await store.nextVisaDeadlineAfter(T0 + 5 * HOUR), undefined);
      }));
  });
}
