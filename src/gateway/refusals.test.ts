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
      ['gateway.refused', 'gateway.refused.summary', 'gateway.refused.overall'],
    );
    assert.equal(written[2]!.details!.count, 100_000, 'the overall summary counts every refusal');
    assert.equal(written[2]!.details!.writtenInFull, 1);
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
    assert.equal(written.length, 5);
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
    assert.deepEqual(
      written.map((e) => [e.action, e.details!.count]),
      [
        ['gateway.refused.summary', 100],
        ['gateway.refused.overall', 100],
      ],
      'nothing counted was lost',
    );
  });

  test('a flood from many addresses writes a bounded number of events per interval, and the overall summary counts them all', () => {
    const written: NewAuditEvent[] = [];
    const sampler = new RefusalSampler({ offer: (e) => (written.push(e), true) });
    const from = (i: number) => `198.51.${i >> 8}.${i & 255}`;
    for (let minute = 0; minute < 3; minute++) {
      const before = written.length;
      // 10 000 addresses, each refused three times (the heaviest more), within one interval.
      for (let round = 0; round < 3; round++)
        for (let i = 0; i < 10_000; i++) {
          const r = refusal(i, { key: `addr:${from(i)}`, address: from(i), at: minute * 60_000 + round });
          sampler.refused(r, full(r));
        }
      for (let n = 0; n < 500; n++) {
        const r = refusal(n, { key: 'addr:203.0.113.99', address: '203.0.113.99', at: minute * 60_000 + 3 });
        sampler.refused(r, full(r));
      }
      sampler.flush(minute * 60_000 + 59_999);
      const events = written.slice(before);
      const count = (action: string) => events.filter((e) => e.action === action).length;
      assert.ok(count('gateway.refused') <= 20, `at most 20 in full: ${count('gateway.refused')}`);
      assert.ok(count('gateway.refused.summary') <= 20, 'at most 20 addresses with a summary of their own');
      assert.equal(count('gateway.refused.overall'), 1);
      assert.ok(events.length <= 41, `the trail grew by ${events.length}`);
      const overall = events.find((e) => e.action === 'gateway.refused.overall')!;
      assert.equal(overall.details!.count, 30_500, 'every refusal is counted');
      assert.equal(overall.details!.sources, 10_001);
      assert.equal(overall.details!.writtenInFull, count('gateway.refused'));
      const top = overall.details!.topSources as { address: string; count: number; maxOvercount?: number }[];
      assert.ok(top.length <= 10);
      assert.equal(top[0]!.address, '203.0.113.99', 'the heaviest source is named first');
      const heaviest = top[0]!;
      assert.ok(
        heaviest.count >= 500 && heaviest.count - (heaviest.maxOvercount ?? 0) <= 500,
        `its count is an estimate that says how far off it can be: ${JSON.stringify(heaviest)}`,
      );
      assert.ok((overall.details!.userAgents as unknown[]).length <= 5);
      assert.ok(sampler.size <= 20, 'sources tracked one by one stay bounded');
    }
  });

  test('the sources counted are bounded: past the limit, the overall summary says "at least"', () => {
    const written: NewAuditEvent[] = [];
    const sampler = new RefusalSampler({ offer: (e) => (written.push(e), true), maxCountedSources: 100 });
    for (let i = 0; i < 1000; i++) {
      const r = refusal(i, { key: `addr:10.0.${i >> 8}.${i & 255}`, address: `10.0.${i >> 8}.${i & 255}` });
      sampler.refused(r, full(r));
    }
    sampler.flush(60_000);
    const overall = written.find((e) => e.action === 'gateway.refused.overall')!;
    assert.equal(overall.details!.count, 1000);
    assert.equal(overall.details!.sources, 100);
    assert.equal(overall.details!.sourcesCapped, true);
    assert.match(overall.reason!, /from at least 100 address/);
  });

  test("a person's own refusals are not held back by the budget anonymous floods use", () => {
    const written: NewAuditEvent[] = [];
    const sampler = new RefusalSampler({ offer: (e) => (written.push(e), true), maxFullPerInterval: 2 });
    for (let i = 0; i < 100; i++) {
      const r = refusal(i, { key: `addr:10.1.0.${i}`, address: `10.1.0.${i}` });
      sampler.refused(r, full(r));
    }
    const mine = refusal(0, { key: 'person:p1', personId: 'p1', actor: 'cora@example.com', status: 429 });
    sampler.refused(mine, full(mine));
    sampler.refused(mine, full(mine));
    sampler.flush(60_000);
    const ofCora = written.filter((e) => e.actor === 'cora@example.com');
    assert.deepEqual(
      ofCora.map((e) => e.action),
      ['gateway.refused', 'gateway.refused.summary'],
    );
    assert.equal(written.filter((e) => e.action === 'gateway.refused').length, 3, 'two anonymous ones, and hers');
  });

  test('an address whose refusals are all written gives its slot to a new one; one still being refused keeps it', () => {
    const written: NewAuditEvent[] = [];
    const sampler = new RefusalSampler({ offer: (e) => (written.push(e), true), maxAddresses: 2 });
    const from = (address: string, i = 0) => refusal(i, { key: `addr:${address}`, address });
    for (const r of [from('busy'), from('busy', 1), from('once'), from('new')]) sampler.refused(r, full(r));
    assert.deepEqual(
      written.map((e) => e.source?.address),
      ['busy', 'once', 'new'],
      'once, written in full and quiet since, made room for new',
    );
    const late = from('later');
    sampler.refused(late, full(late));
    assert.equal(written.length, 4, 'new was quiet too: later takes its slot');
    sampler.refused(from('busy', 2), full(from('busy', 2)));
    sampler.refused(from('later', 1), full(from('later', 1)));
    const last = from('last');
    sampler.refused(last, full(last));
    assert.equal(written.length, 4, 'both slots are held by sources still refused: last is only counted overall');
    sampler.flush(60_000);
    assert.deepEqual(
      written.slice(4).map((e) => [e.action, e.source?.address, e.details!.count]),
      [
        ['gateway.refused.summary', 'busy', 2],
        ['gateway.refused.summary', 'later', 1],
        ['gateway.refused.overall', 'many', 8],
      ],
    );
  });
});
