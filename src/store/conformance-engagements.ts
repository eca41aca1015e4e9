/**
 * Store conformance of engagements.
 * The same on every engine: conformance.ts runs it; it uses only the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Engagement } from '../domain/model.ts';
import {
  T0,
  DAY,
  isNotFound,
  isConflict,
  engagementFixture,
  withFreshStore,
  type OpenFresh,
} from './conformance-support.ts';

export function engagementConformanceSuite(openFresh: OpenFresh): void {
  const withStore = withFreshStore(openFresh);

  describe('engagements', () => {
    test('an engagement reads back exactly as inserted, optional fields included', () =>
      withStore(async (store) => {
        const ended = engagementFixture('eng-ended', {
          status: 'ended',
          endedAt: T0 + DAY,
          endedBy: 'admin@corp.example',
          endReason: 'contract terminated early',
        });
        const open = engagementFixture('eng-open');
        await store.transaction(async (tx) => {
          assert.deepEqual(await tx.insertEngagement(ended), ended);
          await tx.insertEngagement(open);
        });
        assert.deepEqual(await store.getEngagement('eng-ended'), ended);
        assert.deepEqual(await store.getEngagement('eng-open'), open);
        assert.equal(await store.getEngagement('eng-none'), undefined);
      }));

    test('refuses a second engagement with the same id', () =>
      withStore(async (store) => {
        await store.transaction((tx) => tx.insertEngagement(engagementFixture('eng-1')));
        await assert.rejects(
          store.transaction((tx) => tx.insertEngagement(engagementFixture('eng-1', { name: 'other' }))),
          isConflict,
        );
        assert.equal((await store.getEngagement('eng-1'))?.name, 'Engagement eng-1');
      }));

    test('filters engagements by status and by contractor', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          await tx.insertEngagement(engagementFixture('e1', { contractors: ['alice@vendor.example'] }));
          await tx.insertEngagement(
            engagementFixture('e2', {
              startsAt: T0 + DAY,
              contractors: ['alice@vendor.example', 'bob@vendor.example'],
              status: 'ended',
              endedAt: T0 + 2 * DAY,
              endedBy: 'admin@corp.example',
            }),
          );
          await tx.insertEngagement(
            engagementFixture('e3', { startsAt: T0 + 2 * DAY, contractors: ['bob@vendor.example'] }),
          );
        });
        const ids = (list: Engagement[]) => list.map((e) => e.id);
        assert.deepEqual(ids(await store.listEngagements()), ['e1', 'e2', 'e3']);
        assert.deepEqual(ids(await store.listEngagements({ status: 'active' })), ['e1', 'e3']);
        assert.deepEqual(ids(await store.listEngagements({ contractor: 'alice@vendor.example' })), ['e1', 'e2']);
        assert.deepEqual(ids(await store.listEngagements({ contractor: 'BOB@vendor.example', status: 'active' })), [
          'e3',
        ]);
        assert.deepEqual(ids(await store.listEngagements({ contractor: 'carol@vendor.example' })), []);
      }));

    test('an update replaces the engagement, its contractor index included; an unknown id is NotFound', () =>
      withStore(async (store) => {
        await store.transaction((tx) => tx.insertEngagement(engagementFixture('e1')));
        const changed = engagementFixture('e1', {
          contractors: ['bob@vendor.example'],
          ceiling: { clusters: ['prod'], namespacePatterns: ['payments'], profiles: ['viewer', 'debugger'] },
          status: 'ended',
          endedAt: T0 + DAY,
          endedBy: 'sam@corp.example',
          endReason: 'scope changed',
        });
        assert.deepEqual(await store.transaction((tx) => tx.updateEngagement(changed)), changed);
        assert.deepEqual(await store.getEngagement('e1'), changed);
        assert.deepEqual(await store.listEngagements({ contractor: 'alice@vendor.example' }), []);
        assert.deepEqual(
          (await store.listEngagements({ contractor: 'bob@vendor.example' })).map((e) => e.id),
          ['e1'],
        );
        await assert.rejects(
          store.transaction((tx) => tx.updateEngagement(engagementFixture('e9'))),
          isNotFound,
        );
      }));
  });
}
