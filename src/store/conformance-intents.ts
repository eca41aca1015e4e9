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

    test('intents inserted and completed in bulk keep their order, and a bad batch changes nothing', () =>
      withStore(async (store) => {
        const batch = Array.from({ length: 40 }, (_, i) => ({
          ...(i === 3 ? { id: 'i_given' } : {}),
          kind: 'rolebinding.delete',
          cluster: i % 2 === 0 ? 'prod' : 'staging',
          ...(i % 5 === 0 ? { visaId: `v${i}`, personId: `p_${i}` } : {}),
          payload: { namespace: `ns-${39 - i}`, name: `kubevisa-v${i}` },
          createdAt: T0,
        }));
        const inserted = await store.transaction((tx) => tx.insertIntents(batch));
        assert.equal(inserted.length, 40);
        assert.equal(inserted[3]?.id, 'i_given');
        assert.deepEqual(inserted[5], { ...batch[5], id: inserted[5]?.id });
        for (const intent of inserted) assert.deepEqual(await store.getIntent(intent.id), intent);
        // Same createdAt: the pending list keeps the order they were given in.
        assert.deepEqual(
          (await store.listPendingIntents()).map((i) => i.id),
          inserted.map((i) => i.id),
        );
        assert.deepEqual(await store.transaction((tx) => tx.insertIntents([])), []);

        const before = (await store.listPendingIntents()).length;
        for (const bad of [
          [
            { ...batch[0]!, id: 'i_new' },
            { ...batch[1]!, id: 'i_given' },
          ],
          [
            { ...batch[0]!, id: 'i_twice' },
            { ...batch[1]!, id: 'i_twice' },
          ],
        ]) {
          await assert.rejects(
            store.transaction((tx) => tx.insertIntents(bad)),
            isConflict,
          );
        }
        assert.equal((await store.listPendingIntents()).length, before, 'a refused batch inserts none of its intents');

        const firstTen = inserted.slice(0, 10).map((i) => i.id);
        await store.transaction((tx) => tx.completeIntents(firstTen, T0 + MINUTE));
        await store.transaction((tx) => tx.completeIntents([...firstTen, firstTen[0]!], T0 + HOUR));
        assert.equal((await store.getIntent(firstTen[9]!))?.completedAt, T0 + MINUTE, 'the first completion stays');
        assert.deepEqual(
          (await store.listPendingIntents()).map((i) => i.id),
          inserted.slice(10).map((i) => i.id),
        );
        await assert.rejects(
          store.transaction((tx) => tx.completeIntents([inserted[10]!.id, 'i_none'], T0 + HOUR)),
          isNotFound,
        );
        assert.equal(
          (await store.getIntent(inserted[10]!.id))?.completedAt,
          undefined,
          'a refused batch completes none',
        );
        await store.transaction((tx) => tx.completeIntents([], T0));
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
