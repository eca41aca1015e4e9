/**
 * Store conformance of the audit chain (appends, hashes, order under concurrency, append-only), the engine's audit
 * appender and its integrity check.
 * The same on every engine: conformance.ts runs it; it uses only the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GENESIS_HASH, computeAuditHash, verifyChain } from './audit-chain.ts';
import { T0, hasCode, auditFixture, withFreshStore, type OpenFresh } from './conformance-support.ts';
import { InvalidInput } from '../domain/errors.ts';
import type { AuditEvent, NewAuditEvent, Store } from './store.ts';

export function auditChainConformanceSuite(openFresh: OpenFresh): void {
  const withStore = withFreshStore(openFresh);

  describe('audit', () => {
    test('assigns seq 1..n, links each event to the previous hash and hashes what it stores', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          await tx.appendAudit(
            auditFixture('visa.requested', {
              sessionId: 's_1',
              visaId: 'v1',
              engagementId: 'eng-1',
              personId: 'p_1',
              cluster: 'prod',
              namespace: 'payments',
              reason: 'JIRA-123',
              details: { profile: 'viewer', seconds: 28800, nested: { b: 2, a: [1, 'x', null, false] } },
              source: { address: '192.0.2.7:51544', userAgent: 'kubevisa/0.1' },
            }),
          );
          await tx.appendAudit(
            auditFixture('visa.approved', { actor: 'sam@corp.example', source: { address: '192.0.2.8' } }),
          );
          await tx.appendAudit(auditFixture('visa.refused', { outcome: 'refused', reason: 'self-approval' }));
        });
        // The events' places in the chain are known once the transaction committed: read back.
        const appended = await store.listAudit();
        assert.deepEqual(
          appended.map((e) => e.action),
          ['visa.requested', 'visa.approved', 'visa.refused'],
        );
        assert.equal(appended[0]?.sessionId, 's_1');
        assert.deepEqual(appended[0]?.details, {
          profile: 'viewer',
          seconds: 28800,
          nested: { b: 2, a: [1, 'x', null, false] },
        });
        assert.deepEqual(appended[0]?.source, { address: '192.0.2.7:51544', userAgent: 'kubevisa/0.1' });
        assert.deepEqual(appended[1]?.source, { address: '192.0.2.8' });
        assert.equal(appended[2]?.outcome, 'refused');
        assert.deepEqual(
          appended.map((e) => e.seq),
          [1, 2, 3],
        );
        assert.equal(appended[0]?.prevHash, GENESIS_HASH);
        assert.equal(appended[1]?.prevHash, appended[0]?.hash);
        assert.equal(appended[2]?.prevHash, appended[1]?.hash);
        for (const event of appended) {
          assert.match(event.hash, /^[0-9a-f]{64}$/);
          assert.equal(computeAuditHash(event), event.hash);
        }
        assert.deepEqual(verifyChain(appended), { ok: true, count: 3, head: { seq: 3, hash: appended[2]?.hash } });
        assert.deepEqual(await store.getAuditHead(), { seq: 3, hash: appended[2]?.hash });
      }));

    test('refuses text the store could not hold as hashed, changes nothing, and keeps verifiable details', () =>
      withStore(async (store) => {
        await store.transaction((tx) => tx.appendAudit(auditFixture('visa.requested')));
        // A lone surrogate has no UTF-8 form: stored, it would read back as U+FFFD and never match its hash.
        const refused: [string, Partial<NewAuditEvent>][] = [
          ['reason', { reason: 'ok \ud800 then' }],
          ['actor', { actor: 'mallory\udfff@vendor.example' }],
          ['namespace', { namespace: 'pay\ud83d' }],
          ['source.userAgent', { source: { address: '192.0.2.1', userAgent: 'kubectl\ud800' } }],
          ['reason', { reason: 'a\u0000b' }],
        ];
        for (const [field, overrides] of refused) {
          await assert.rejects(
            store.transaction(async (tx) => {
              await tx.appendAudit(auditFixture('visa.revoked', { visaId: 'v_before' }));
              await tx.appendAudit(auditFixture('visa.revoked', overrides));
            }),
            (error: unknown) => {
              hasCode(InvalidInput.code)(error);
              assert.match((error as Error).message, new RegExp(`audit event ${field.replace('.', '\\.')} `));
              return true;
            },
          );
        }
        // Details keep any text: canonical JSON escapes it, and the JSON text is what the store holds.
        const details = { note: 'lone \ud800 and \u0000 and pair \ud83d\ude00', ['key\udc00']: 1 };
        await store.transaction((tx) =>
          tx.appendAudit(auditFixture('visa.noted', { reason: 'pair \ud83d\ude00', details })),
        );
        const events = await store.listAudit();
        assert.deepEqual(
          events.map((event) => event.action),
          ['visa.requested', 'visa.noted'],
          'a refused event and the rest of its transaction are not stored',
        );
        assert.deepEqual(events[1]?.details, details);
        assert.equal(events[1]?.reason, 'pair \ud83d\ude00');
        assert.deepEqual(verifyChain(events), { ok: true, count: 2, head: { seq: 2, hash: events[1]?.hash } });
      }));

    test('an event without details stores an empty object', () =>
      withStore(async (store) => {
        const { details: _omitted, ...withoutDetails } = auditFixture('session.created');
        await store.transaction((tx) => tx.appendAudit(withoutDetails));
        const [event] = await store.listAudit();
        assert.deepEqual(event?.details, {});
        assert.equal(event === undefined ? false : computeAuditHash(event) === event.hash, true);
      }));

    test('filters and pages the audit trail', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          for (let i = 1; i <= 10; i++) {
            await tx.appendAudit(
              auditFixture(i % 2 === 0 ? 'visa.approved' : 'visa.requested', {
                visaId: `v${i % 3}`,
                personId: i <= 5 ? 'p_a' : 'p_b',
                engagementId: i <= 3 ? 'eng-1' : 'eng-2',
              }),
            );
          }
        });
        const seqs = async (filter: Parameters<Store['listAudit']>[0]) =>
          (await store.listAudit(filter)).map((e) => e.seq);
        assert.deepEqual(await seqs({}), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert.deepEqual(await seqs({ afterSeq: 7 }), [8, 9, 10]);
        assert.deepEqual(await seqs({ limit: 3 }), [1, 2, 3]);
        assert.deepEqual(await seqs({ afterSeq: 3, limit: 2 }), [4, 5]);
        assert.deepEqual(await seqs({ visaId: 'v1' }), [1, 4, 7, 10]);
        assert.deepEqual(await seqs({ personId: 'p_b', action: 'visa.approved' }), [6, 8, 10]);
        assert.deepEqual(await seqs({ engagementId: 'eng-1' }), [1, 2, 3]);
        await assert.rejects(store.listAudit({ limit: 0 }), hasCode('ERR_INVALID_INPUT'));
      }));

    test('keeps one unbroken chain across many concurrent transactions', () =>
      withStore(async (store) => {
        const writers = 30;
        await Promise.all(
          Array.from({ length: writers }, (_, i) =>
            store.transaction(async (tx) => {
              await tx.appendAudit(auditFixture('visa.requested', { visaId: `v${i}`, at: T0 + i }));
              // Yield between the two appends so that, if transactions could interleave, they would.
              await sleep(1);
              await tx.appendAudit(auditFixture('cluster.rolebinding.created', { visaId: `v${i}`, at: T0 + i }));
            }),
          ),
        );
        const events = await store.listAudit({ limit: 1000 });
        assert.equal(events.length, 2 * writers);
        assert.deepEqual(
          events.map((e) => e.seq),
          Array.from({ length: 2 * writers }, (_, i) => i + 1),
        );
        assert.equal(verifyChain(events).ok, true);
        // Each transaction's two events are adjacent: appends of one transaction are not interleaved.
        for (let i = 0; i < events.length; i += 2) assert.equal(events[i]?.visaId, events[i + 1]?.visaId);
      }));

    test('verifyChain pinpoints a flipped byte, a deleted, an inserted and a reordered event', () =>
      withStore(async (store) => {
        await store.transaction(async (tx) => {
          for (let i = 0; i < 6; i++) {
            await tx.appendAudit(auditFixture('visa.requested', { visaId: `v${i}`, details: { i } }));
          }
        });
        const events = await store.listAudit();
        assert.equal(verifyChain(events).ok, true);
        const at = (list: AuditEvent[]) => {
          const verdict = verifyChain(list);
          assert.equal(verdict.ok, false);
          return verdict.ok ? undefined : { index: verdict.index, fault: verdict.fault };
        };
        const e = (i: number): AuditEvent => {
          const event = events[i];
          assert.ok(event);
          return event;
        };

        const flipped = events.map((event, i) => (i === 3 ? { ...event, actor: 'alicf@vendor.example' } : event));
        assert.deepEqual(at(flipped), { index: 3, fault: 'hash-mismatch' });
        const flippedHash = events.map((event, i) =>
          i === 2
            ? {
                ...event,
                hash: `${event.hash.slice(0, 10)}${event.hash[10] === '0' ? '1' : '0'}${event.hash.slice(11)}`,
              }
            : event,
        );
        assert.deepEqual(at(flippedHash), { index: 2, fault: 'hash-mismatch' });
        const flippedDetails = events.map((event, i) => (i === 4 ? { ...event, details: { i: 5 } } : event));
        assert.deepEqual(at(flippedDetails), { index: 4, fault: 'hash-mismatch' });

        const deleted = events.filter((_, i) => i !== 2);
        assert.deepEqual(at(deleted), { index: 2, fault: 'gap' });
        assert.deepEqual(at(events.slice(1)), { index: 0, fault: 'gap' });

        // A forger can compute a valid hash (the chain has no key) and link to a genuine predecessor.
        const forgedBody = { ...e(1), seq: e(2).seq, prevHash: e(1).hash, action: 'visa.approved', visaId: 'forged' };
        const forged = { ...forgedBody, hash: computeAuditHash(forgedBody) };
        assert.deepEqual(at([...events.slice(0, 2), forged, ...events.slice(2)]), { index: 2, fault: 'inserted' });

        const reordered = [e(0), e(1), e(2), e(4), e(3), e(5)];
        assert.deepEqual(at(reordered), { index: 3, fault: 'reorder' });
      }));

    test("the engine's audit appender appends each batch, in order, to the one chain the transactions extend", () =>
      withStore(async (store) => {
        const appender = store.openAuditAppender();
        try {
          await store.transaction((tx) => tx.appendAudit(auditFixture('visa.requested')));
          await appender.write([
            auditFixture('gateway.request', { actor: 'a' }),
            auditFixture('gateway.request', { actor: 'b' }),
          ]);
          await Promise.all([
            appender.write(Array.from({ length: 20 }, (_, i) => auditFixture('gateway.request', { actor: `w${i}` }))),
            ...Array.from({ length: 10 }, () =>
              store.transaction((tx) => tx.appendAudit(auditFixture('visa.approved'))),
            ),
          ]);
        } finally {
          await appender.close();
        }
        const trail = await store.listAudit({ limit: 100 });
        assert.equal(trail.length, 33);
        assert.deepEqual(
          trail.slice(0, 3).map((event) => event.actor),
          ['alice@vendor.example', 'a', 'b'],
        );
        const batch = trail.filter((event) => event.actor.startsWith('w')).map((event) => event.actor);
        assert.deepEqual(
          batch,
          Array.from({ length: 20 }, (_, i) => `w${i}`),
          'a batch keeps its order',
        );
        const verdict = verifyChain(trail);
        assert.equal(verdict.ok, true, JSON.stringify(verdict));
      }));

    test("an audit appender refuses a write holding text the store cannot hold, alone: the others' writes of that turn go in, and later ones too", () =>
      withStore(async (store) => {
        // PostgreSQL's appender checked the text while chaining a batch: the check threw out of its flush loop, an
        // unhandled rejection that ended the server process (a replica hearing a revocation reason cut inside an
        // emoji), and the other writes of the batch were never answered.
        const appender = store.openAuditAppender();
        try {
          const [before, bad, alongside] = await Promise.allSettled([
            appender.write([auditFixture('gateway.request', { actor: 'before' })]),
            appender.write([
              auditFixture('gateway.request', { actor: 'bad', reason: `cut ${'\u{1F600}'.slice(0, 1)}` }),
            ]),
            appender.write([auditFixture('gateway.request', { actor: 'alongside' })]),
          ]);
          assert.equal(before.status, 'fulfilled');
          assert.equal(alongside.status, 'fulfilled');
          assert.equal(bad.status, 'rejected');
          hasCode(InvalidInput.code)(bad.reason);
          await appender.write([auditFixture('gateway.request', { actor: 'after' })]);
        } finally {
          await appender.close();
        }
        const trail = await store.listAudit({ limit: 100 });
        assert.deepEqual(
          trail.map((event) => event.actor),
          ['before', 'alongside', 'after'],
        );
        assert.equal(verifyChain(trail).ok, true);
      }));

    test('an audit appender refuses writes once closed', () =>
      withStore(async (store) => {
        const appender = store.openAuditAppender();
        await appender.write([auditFixture('gateway.request')]);
        await appender.close();
        await assert.rejects(appender.write([auditFixture('gateway.request')]));
        assert.equal((await store.listAudit()).length, 1);
      }));

    test('the integrity check of a store nobody tampered with finds nothing, and says so again on a second call', () =>
      withStore(async (store) => {
        assert.deepEqual(await store.checkIntegrity(), []);
        await store.transaction((tx) => tx.appendAudit(auditFixture('visa.requested')));
        assert.deepEqual(await store.checkIntegrity(), []);
      }));
  });
}
