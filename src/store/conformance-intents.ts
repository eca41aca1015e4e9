/**
 * Store conformance of the reconciler's intents, including across a crash-like reopen.
 * The same on every engine: conformance.ts runs it; it uses only the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { T0, MINUTE, HOUR, isNotFound, isConflict, withFreshStore, type OpenFresh } from './conformance-support.ts';
import type { Store } from './store.ts';

export function intentConformanceSuite(
  openFresh: OpenFresh,
  options: { reopen: (previous: Store) => Promise<Store> },
): void {
  const withStore = withFreshStore(openFresh);

  describe('intents', () => {
    test('an intent is pending until completed; completing is idempotent and keeps the first time', () =>
      withStore(async (store) => {
        const [first, second] = await store.transaction(async (tx) => [
          await tx.insertIntent({
            kind: 'rolebinding.create',
            cluster: 'prod',
            visaId: 'v1',
            personId: 'p_x',
            payload: {
              namespace: 'payments',
              name: 'kubevisa-v1',
              labels: { 'kubevisa.io/visa': 'v1' },
              n: [1, true, null],
            },
            createdAt: T0,
          }),
          await tx.insertIntent({
            id: 'i_chosen',
            kind: 'serviceaccount.delete',
            cluster: 'staging',
            payload: {},
            createdAt: T0 + 1,
          }),
        ]);
        assert.ok(first && second);
        assert.match(first.id, /^i_[a-z2-7]{26}$/);
        assert.equal(second.id, 'i_chosen');
        assert.deepEqual(await store.getIntent(first.id), first);
        assert.equal(first.completedAt, undefined);
        assert.deepEqual(
          (await store.listPendingIntents()).map((i) => i.id),
          [first.id, 'i_chosen'],
        );
        assert.deepEqual(
          (await store.listPendingIntents({ cluster: 'staging' })).map((i) => i.id),
          ['i_chosen'],
        );

        const done = await store.transaction((tx) => tx.completeIntent(first.id, T0 + MINUTE));
        assert.deepEqual(done, { ...first, completedAt: T0 + MINUTE });
        const again = await store.transaction((tx) => tx.completeIntent(first.id, T0 + HOUR));
        assert.equal(again.completedAt, T0 + MINUTE);
        assert.deepEqual(
          (await store.listPendingIntents()).map((i) => i.id),
          ['i_chosen'],
        );
      }));

    test('refuses a duplicate intent id and completing an unknown intent', () =>
      withStore(async (store) => {
        const intent = { id: 'i_1', kind: 'rolebinding.delete', cluster: 'prod', payload: {}, createdAt: T0 };
        await store.transaction((tx) => tx.insertIntent(intent));
        await assert.rejects(
          store.transaction((tx) => tx.insertIntent(intent)),
          isConflict,
        );
        await assert.rejects(
          store.transaction((tx) => tx.completeIntent('i_none', T0)),
          isNotFound,
        );
      }));

    test('pending intents are still pending after a crash-like reopen', async () => {
      const reopen = options.reopen;
      const store = await openFresh();
      let second: Store | undefined;
      try {
        const intent = await store.transaction((tx) =>
          tx.insertIntent({
            kind: 'rolebinding.create',
            cluster: 'prod',
            payload: { ns: 'payments' },
            createdAt: T0,
          }),
        );
        const done = await store.transaction((tx) =>
          tx.insertIntent({ kind: 'rolebinding.delete', cluster: 'prod', payload: {}, createdAt: T0 + 1 }),
        );
        await store.transaction((tx) => tx.completeIntent(done.id, T0 + 2));
        second = await reopen(store);
        assert.deepEqual(await second.listPendingIntents(), [intent]);
      } finally {
        await second?.close();
        await store.close();
      }
    });
  });
}
