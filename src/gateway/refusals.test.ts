import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { NewAuditEvent } from '../store/store.ts';
import { RefusalSampler, type Refusal } from './refusals.ts';

function refusal(i: number, overrides: Partial<Refusal> = {}): Refusal {
  return {
    key: 'addr:203.0.113.7',
    at: 1_000 + i,
    status: 401,
    message: 'a kubevisa access token is required',
    path: `/clusters/prod/api/v1/namespaces/n${i % 7}/pods`,
    address: '203.0.113.7',
    userAgent: `flood/${i}`,
    actor: 'anonymous',
    ...overrides,
  };
}

const full = (r: Refusal) => (): NewAuditEvent => ({
  at: r.at,
  actor: r.actor,
  action: 'gateway.refused',
  outcome: 'refused',
  reason: r.message,
  details: { status: r.status },
  source: { address: r.address, ...(r.userAgent ? { userAgent: r.userAgent } : {}) },
});

describe('refusal sampling', () => {
  test('a flood from one address is one full event and one summary per interval, whatever its size', () => {
    const written: NewAuditEvent[] = [];
    const sampler = new RefusalSampler({ offer: (e) => (written.push(e), true) });
    for (let i = 0; i < 100_000; i++) {
      const r = refusal(i, { status: i < 200 ? 401 : 429 });
      sampler.refused(r, full(r));
    }
    sampler.flush(500_000);
    assert.deepEqual(
      written.map((e) => e.action),
      ['gateway.refused', 'gateway.refused.summary'],
    );
    const summary = written[1]!;
    assert.equal(summary.details!.count, 99_999);
    assert.deepEqual(summary.details!.statuses, { '401': 199, '429': 99_800 });
    assert.equal((summary.details!.samples as unknown[]).length, 3, 'a few samples, not all');
    const agents = summary.details!.userAgents as { userAgent: string; count: number }[];
    assert.equal(agents.length, 5, 'a few user agents, each counted');
    assert.equal(summary.details!.otherUserAgents, 99_999 - 5);
    assert.equal(summary.source?.address, '203.0.113.7');
    // The next interval's flood adds one summary; a quiet source is forgotten after a whole quiet interval.
    for (let i = 0; i < 10; i++) sampler.refused(refusal(i), full(refusal(i)));
    sampler.flush(510_000);
    assert.equal(written.length, 3);
    sampler.flush(520_000);
    sampler.flush(530_000);
    assert.equal(sampler.size, 0);
  });

  test('user agents are truncated, and one named __proto__ is counted like any other', () => {
    const written: NewAuditEvent[] = [];
    const sampler = new RefusalSampler({ offer: (e) => (written.push(e), true) });
    for (const userAgent of ['first', 'x'.repeat(5000), '__proto__', '__proto__']) {
      const r = refusal(0, { userAgent });
      sampler.refused(r, full(r));
    }
    sampler.flush(2_000);
    const agents = written[1]!.details!.userAgents as { userAgent: string; count: number }[];
    assert.deepEqual(
      agents.map((a) => [a.userAgent.length, a.count]),
      [
        [100, 1],
        [9, 2],
      ],
    );
    assert.equal(Object.getPrototypeOf(written[1]!.details), Object.prototype);
  });

  test('when the audit queue is full, summaries give way and keep counting until it has room', () => {
    const written: NewAuditEvent[] = [];
    let room = false;
    const sampler = new RefusalSampler({ offer: (e) => room && (written.push(e), true) });
    for (let i = 0; i < 50; i++) sampler.refused(refusal(i), full(refusal(i)));
    sampler.flush(2_000);
    assert.equal(written.length, 0);
    for (let i = 0; i < 50; i++) sampler.refused(refusal(i), full(refusal(i)));
    room = true;
    sampler.flush(3_000);
    assert.equal(written.length, 1);
    assert.equal(written[0]!.details!.count, 100, 'nothing counted was lost');
  });

  test('sources are bounded: past the limit, new ones are counted together', () => {
    const written: NewAuditEvent[] = [];
    const sampler = new RefusalSampler({ offer: (e) => (written.push(e), true), maxSources: 100 });
    for (let i = 0; i < 10_000; i++) {
      const r = refusal(i, { key: `addr:198.51.${i >> 8}.${i & 255}`, address: `198.51.${i >> 8}.${i & 255}` });
      sampler.refused(r, full(r));
    }
    assert.equal(sampler.size, 101);
    sampler.flush(20_000);
    const overflow = written.filter((e) => e.source?.address === 'many');
    assert.equal(overflow.length, 1);
    assert.equal(overflow[0]!.details!.count, 9_900);
    assert.equal(written.length, 101, 'one full event for each tracked source, one summary for the rest');
  });
});
