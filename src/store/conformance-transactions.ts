/**
 * Store conformance of transactions: atomicity, isolation, rollback, and what a failed commit leaves.
 * The same on every engine: conformance.ts runs it; it uses only the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GENESIS_HASH } from './audit-chain.ts';
import {
  T0,
  hasCode,
  login,
  visaFixture,
  auditFixture,
  seed,
  withFreshStore,
  type OpenFresh,
} from './conformance-support.ts';
import type { StoreTx } from './store.ts';

export function transactionConformanceSuite(openFresh: OpenFresh): void {
  const withStore = withFreshStore(openFresh);

  describe('transactions', () => {
    test('commits when the callback resolves and returns its value', () =>
      withStore(async (store) => {
        const value = await store.transaction(async (tx) => {
          await tx.upsertPersonFromLogin(login('alice@vendor.example'));
          return 42;
        });
        assert.equal(value, 42);
        assert.ok(await store.getPersonByEmail('alice@vendor.example'));
      }));

    test('rolls back everything, audit event included, when the callback throws, and rethrows the same error', () =>
      withStore(async (store) => {
        const boom = new Error('decided to give up');
        await assert.rejects(
          store.transaction(async (tx) => {
            const { alice } = await seed(tx);
            await tx.insertVisa(visaFixture('v1', alice, 'eng-1'));
            await tx.appendAudit(auditFixture('visa.requested', { visaId: 'v1' }));
            await tx.insertIntent({ kind: 'rolebinding.create', cluster: 'prod', payload: {}, createdAt: T0 });
            await tx.putSetting('k', 1, T0);
            throw boom;
          }),
          (error: unknown) => error === boom,
        );
        assert.deepEqual(await store.listPersons(), []);
        assert.deepEqual(await store.listEngagements(), []);
        assert.deepEqual(await store.listVisas(), []);
        assert.deepEqual(await store.listAudit(), []);
        assert.equal(await store.getAuditHead(), undefined);
        assert.deepEqual(await store.listPendingIntents(), []);
        assert.equal(await store.getSetting('k'), undefined);
        // The rolled-back event left no hole: the next one is seq 1 and links to the genesis.
        await store.transaction((tx) => tx.appendAudit(auditFixture('visa.requested')));
        const [next] = await store.listAudit();
        assert.equal(next?.seq, 1);
        assert.equal(next?.prevHash, GENESIS_HASH);
      }));

    test('a read outside a transaction never sees a write that is later rolled back', () =>
      withStore(async (store) => {
        let written!: () => void;
        let read!: () => void;
        const writtenSignal = new Promise<void>((resolve) => (written = resolve));
        const readSignal = new Promise<void>((resolve) => (read = resolve));
        const failing = store.transaction(async (tx) => {
          await tx.upsertPersonFromLogin(login('ghost@vendor.example'));
          written();
          // Stay open until the read has run (bounded, for an engine whose reads wait for open transactions).
          await Promise.race([readSignal, sleep(2000)]);
          throw new Error('abort');
        });
        await writtenSignal;
        const seen = await store.getPersonByEmail('ghost@vendor.example');
        read();
        await assert.rejects(failing, /abort/);
        assert.equal(seen, undefined);
        assert.equal(await store.getPersonByEmail('ghost@vendor.example'), undefined);
      }));

    test('refuses use of a tx after its transaction has ended', () =>
      withStore(async (store) => {
        let leaked: StoreTx | undefined;
        await store.transaction(async (tx) => {
          leaked = tx;
        });
        assert.ok(leaked);
        const tx = leaked;
        await assert.rejects(tx.upsertPersonFromLogin(login('late@vendor.example')), /ended/);
        await assert.rejects(tx.listPersons(), /ended/);
        assert.deepEqual(await store.listPersons(), []);
      }));

    test('after close every call is refused', async () => {
      const store = await openFresh();
      await store.close();
      await assert.rejects(store.listPersons(), hasCode('ERR_STORE_UNAVAILABLE'));
      await assert.rejects(
        store.transaction(async () => 1),
        hasCode('ERR_STORE_UNAVAILABLE'),
      );
      await store.close();
    });
  });
}
