/**
 * Conformance of the audit trail's store API beyond appending (conformance-audit-chain.ts): the filters of the audit
 * endpoints, events as chain records, and signed checkpoints. Every engine runs it through
 * storeConformanceSuite.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Conflict } from '../domain/errors.ts';
import { GENESIS_HASH, auditContentHash, auditContentText, computeAuditHash, linkAuditHash } from './audit-chain.ts';
import type { NewAuditEvent, Store } from './store.ts';

const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
const MINUTE = 60_000;

function fixture(i: number): NewAuditEvent {
  return {
    at: T0 + i * MINUTE,
    actor: i % 2 === 0 ? 'alice@vendor.example' : 'sam@corp.example',
    action: i % 3 === 0 ? 'visa.approved' : 'gateway.request',
    outcome: 'ok',
    ...(i % 2 === 0 ? { cluster: 'prod', namespace: i % 4 === 0 ? 'payments' : 'billing' } : { cluster: 'staging' }),
    ...(i % 5 === 0 ? { personId: 'p_alice' } : {}),
    details: { i, nested: { b: [1, 'two'], a: null } },
  };
}

export function auditConformanceSuite(openFresh: () => Promise<Store>): void {
  async function withTrail(events: number, body: (store: Store) => Promise<void>): Promise<void> {
    const store = await openFresh();
    try {
      await store.transaction(async (tx) => {
        for (let i = 1; i <= events; i++) await tx.appendAudit(fixture(i));
      });
      await body(store);
    } finally {
      await store.close();
    }
  }
  const seqs = async (store: Store, filter: Parameters<Store['listAudit']>[0]) =>
    (await store.listAudit(filter)).map((event) => event.seq);

  describe('audit search, records and checkpoints', () => {
    test('filters by cluster, namespace, actor, person involved, time window and seq range', () =>
      withTrail(12, async (store) => {
        assert.deepEqual(await seqs(store, { cluster: 'staging' }), [1, 3, 5, 7, 9, 11]);
        assert.deepEqual(await seqs(store, { cluster: 'prod', namespace: 'payments' }), [4, 8, 12]);
        assert.deepEqual(await seqs(store, { actor: 'sam@corp.example', action: 'visa.approved' }), [3, 9]);
        assert.deepEqual(
          await seqs(store, { involving: { personId: 'p_alice', email: 'sam@corp.example' } }),
          [1, 3, 5, 7, 9, 10, 11],
        );
        assert.deepEqual(await seqs(store, { involving: {} }), [], 'involving nobody matches nothing');
        assert.deepEqual(await seqs(store, { since: T0 + 3 * MINUTE, until: T0 + 6 * MINUTE }), [3, 4, 5]);
        assert.deepEqual(await seqs(store, { afterSeq: 2, throughSeq: 5 }), [3, 4, 5]);
      }));

    test('pages newest first with a before cursor', () =>
      withTrail(7, async (store) => {
        assert.deepEqual(await seqs(store, { newestFirst: true, limit: 3 }), [7, 6, 5]);
        assert.deepEqual(await seqs(store, { newestFirst: true, beforeSeq: 5, limit: 3 }), [4, 3, 2]);
        assert.deepEqual(await seqs(store, { newestFirst: true, cluster: 'prod' }), [6, 4, 2]);
      }));

    test('gives one event by seq', () =>
      withTrail(3, async (store) => {
        assert.equal((await store.getAuditEvent(2))?.seq, 2);
        assert.equal(await store.getAuditEvent(4), undefined);
      }));

    test('gives events as chain records whose content text hashes to their hash', () =>
      withTrail(6, async (store) => {
        const events = await store.listAudit();
        const records = await store.listAuditRecords();
        assert.equal(records.length, 6);
        records.forEach((record, i) => {
          const event = events[i];
          assert.ok(event);
          assert.equal(record.contentText, auditContentText(event));
          assert.equal(linkAuditHash(record.seq, record.prevHash, auditContentHash(record.contentText)), record.hash);
          assert.equal(computeAuditHash(event), record.hash);
          assert.equal(record.personId, event.personId);
        });
        assert.deepEqual(
          (await store.listAuditRecords({ cluster: 'prod', limit: 2 })).map((r) => r.seq),
          [2, 4],
        );
      }));

    test('keeps checkpoints in order and refuses one that does not name the trail as it is or goes back', () =>
      withTrail(4, async (store) => {
        const head = await store.getAuditHead();
        assert.ok(head);
        const second = await store.getAuditEvent(2);
        assert.ok(second);
        const signed = { at: T0, keyId: 'key-1', signature: 'sig' };
        const empty = await store.transaction((tx) =>
          tx.appendAuditCheckpoint({ ...signed, seq: 0, hash: GENESIS_HASH }),
        );
        const atTwo = await store.transaction((tx) =>
          tx.appendAuditCheckpoint({ ...signed, seq: 2, hash: second.hash }),
        );
        const atHead = await store.transaction((tx) => tx.appendAuditCheckpoint({ ...signed, ...head }));
        assert.deepEqual([empty.id, atTwo.id, atHead.id], [1, 2, 3]);
        assert.deepEqual(await store.listAuditCheckpoints(), [empty, atTwo, atHead]);
        assert.deepEqual(await store.listAuditCheckpoints({ newestFirst: true, limit: 1 }), [atHead]);
        assert.deepEqual(await store.listAuditCheckpoints({ throughSeq: 3 }), [empty, atTwo]);
        const refused = (checkpoint: { seq: number; hash: string }) =>
          assert.rejects(
            store.transaction((tx) => tx.appendAuditCheckpoint({ ...signed, ...checkpoint })),
            (error: unknown) => (error as { code?: unknown }).code === Conflict.code,
          );
        await refused({ seq: 3, hash: second.hash });
        await refused({ seq: 9, hash: head.hash });
        await refused({ seq: 2, hash: second.hash });
        assert.equal((await store.listAuditCheckpoints()).length, 3);
      }));
  });
}
