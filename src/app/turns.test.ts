import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openSqliteStore } from '../store/sqlite.ts';
import { extendTurn, releaseTurn, takeTurn } from './turns.ts';

test('one taker holds a turn until it expires, is extended or given back', async () => {
  const store = await openSqliteStore({ path: ':memory:' });
  try {
    assert.equal(await takeTurn(store, 't', 'device-poll', 1000, 5000), true);
    assert.equal(await takeTurn(store, 't', 'device-poll', 2000, 5000), false);
    assert.equal(await takeTurn(store, 't', 'device-poll', 6000, 5000), true, 'expired: taken over');
    await extendTurn(store, 't', 20_000);
    assert.equal(await takeTurn(store, 't', 'device-poll', 12_000, 5000), false);
    await releaseTurn(store, 't');
    assert.equal(await takeTurn(store, 't', 'device-poll', 12_000, 5000), true);
    const taken = await Promise.all(Array.from({ length: 8 }, () => takeTurn(store, 'u', 'x', 1, 10)));
    assert.equal(taken.filter(Boolean).length, 1);
  } finally {
    await store.close();
  }
});
