import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openSqliteStore } from '../store/sqlite.ts';
import { ReplicaKeysDiffer, SHARED_KEYS_SETTING, checkSharedKeys } from './shared-keys.ts';

const facts = { signingKeyId: 'sig-1', secretBoxKeyId: 'box-1', issuer: 'https://kubevisa.example' };

test('records the first server keys, accepts the same, refuses others by name and adopts only when told', async () => {
  const store = await openSqliteStore({ path: ':memory:' });
  try {
    assert.equal(await checkSharedKeys(store, facts, { now: 1 }), 'recorded');
    assert.equal(await checkSharedKeys(store, facts, { now: 2 }), 'matches');
    // A lone server without a publicUrl is not checked on it.
    assert.equal(await checkSharedKeys(store, { ...facts, issuer: '' }, { now: 3 }), 'matches');
    await assert.rejects(
      checkSharedKeys(store, { ...facts, secretBoxKeyId: 'box-2', issuer: 'https://other.example' }, { now: 4 }),
      (error: unknown) => {
        assert.ok(error instanceof ReplicaKeysDiffer);
        assert.equal(error.code, 'ERR_REPLICA_KEYS_DIFFER');
        assert.match(
          error.message,
          /this server's secret key \(session-encryption\.key\) and public URL \(publicUrl\) differ from/,
        );
        assert.match(error.message, /--adopt-keys/);
        return true;
      },
    );
    assert.deepEqual(await store.getSetting(SHARED_KEYS_SETTING), facts);
    assert.equal(await checkSharedKeys(store, { ...facts, signingKeyId: 'sig-2' }, { now: 5, adopt: true }), 'adopted');
    assert.equal((await store.listAudit({ action: 'server.keys-adopted' })).length, 1);
    await assert.rejects(checkSharedKeys(store, facts, { now: 6 }), ReplicaKeysDiffer);
  } finally {
    await store.close();
  }
});
