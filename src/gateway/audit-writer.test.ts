import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { NewAuditEvent } from '../store/store.ts';
import { assertStorableAuditContent } from '../store/audit-chain.ts';
import { AuditBatcher } from './audit-writer.ts';

const event = (n: number, actor: string): NewAuditEvent => ({
  at: 1_700_000_000_000 + n,
  actor,
  action: 'gateway.request',
  outcome: 'ok',
  details: { n, verb: 'get', status: 200 },
});

describe('the audit batch queue is bounded', () => {
  test('when the writer falls behind, the queue stops taking what may give way, and keeps every relayed event', async () => {
    const written: NewAuditEvent[] = [];
    let release: () => void = () => {};
    const stalled = new Promise<void>((resolve) => (release = resolve));
    const batcher = new AuditBatcher({
      sink: {
        write: async (events) => {
          await stalled;
          written.push(...events);
        },
        close: async () => {},
      },
      delayMs: 1,
      maxQueued: 10,
      onError: () => {},
    });
    for (let i = 0; i < 10; i++) assert.equal(batcher.offer(event(i, 'refusal')), true);
    assert.equal(batcher.hasRoom, false, 'full: the gateway admits nothing new');
    assert.equal(batcher.offer(event(10, 'refusal')), false, 'a refusal summary gives way');
    // Requests relayed before the queue filled still end, and their events are kept.
    for (let i = 0; i < 5; i++) batcher.add(event(100 + i, 'relayed'));
    assert.equal(batcher.queued, 15);
    const flushed = batcher.flush();
    release();
    await flushed;
    assert.equal(batcher.hasRoom, true);
    assert.equal(written.filter((e) => e.actor === 'relayed').length, 5);
    assert.equal(written.length, 15);
    await batcher.close();
  });
});

describe('durable audit events', () => {
  test('durable() resolves only once the event is written, and fails (taking it back) when it cannot be', async () => {
    const written: NewAuditEvent[] = [];
    let failing = false;
    const batcher = new AuditBatcher({
      sink: {
        write: async (events) => {
          if (failing) throw new Error('disk full');
          written.push(...events);
        },
        close: async () => {},
      },
      delayMs: 60_000,
      onError: () => {},
    });
    batcher.add(event(1, 'queued before'));
    await batcher.durable(event(2, 'session started'));
    assert.deepEqual(
      written.map((e) => e.actor),
      ['queued before', 'session started'],
      'written at once, in order, without waiting for the batch timer',
    );
    failing = true;
    await assert.rejects(batcher.durable(event(3, 'not durable')), /could not be written/);
    assert.equal(batcher.queued, 0, 'a session that did not start is not recorded as started');
    await batcher.close().catch(() => undefined);
  });
});

describe('an event the trail could not hold', () => {
  test('is queued with its text made storable, so it cannot stop the writer (a refused batch is retried forever)', async () => {
    const written: NewAuditEvent[] = [];
    const errors: Error[] = [];
    const batcher = new AuditBatcher({
      // The store's own check: a batch holding such an event is refused whole.
      sink: {
        write: async (events) => {
          for (const e of events) assertStorableAuditContent(e);
          written.push(...events);
        },
        close: async () => {},
      },
      delayMs: 1,
      onError: (error) => errors.push(error),
    });
    const split = `refused: ${'\u{1F600}'.slice(0, 1)}`;
    batcher.add({ ...event(1, 'cora@vendor.example'), reason: split, namespace: 'ns\u0000' });
    await batcher.durable({
      ...event(2, 'cora@vendor.example'),
      source: { address: '192.0.2.1', userAgent: 'ua\udc00' },
    });
    batcher.add(event(3, 'after'));
    await batcher.flush();
    assert.deepEqual(errors, []);
    assert.equal(batcher.healthy, true);
    assert.deepEqual(
      written.map((e) => [e.reason, e.namespace, e.source?.userAgent]),
      [
        ['refused: \ufffd', 'ns\ufffd', undefined],
        [undefined, undefined, 'ua\ufffd'],
        [undefined, undefined, undefined],
      ],
    );
  });
});
