import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  GENESIS_HASH,
  auditContentHash,
  auditContentText,
  canonicalJson,
  computeAuditHash,
  linkAuditHash,
  verifyChain,
  type AuditLink,
  type ChainEntry,
} from './audit-chain.ts';
import type { AuditEvent, JsonObject } from './store.ts';

/** A valid chain of `length` events built by hand, independent of any store. */
function chain(length: number): AuditEvent[] {
  const events: AuditEvent[] = [];
  let prevHash = GENESIS_HASH;
  for (let seq = 1; seq <= length; seq++) {
    const body = {
      seq,
      at: 1_900_000_000_000 + seq,
      actor: 'system',
      action: 'cluster.rolebinding.created',
      visaId: `v${seq}`,
      outcome: 'ok' as const,
      details: { namespace: 'payments', seq },
      prevHash,
    };
    const event = { ...body, hash: computeAuditHash(body) };
    events.push(event);
    prevHash = event.hash;
  }
  return events;
}

function fault(events: AuditEvent[], options?: Parameters<typeof verifyChain>[1]) {
  const verdict = verifyChain(events, options);
  if (verdict.ok) return assert.fail('expected the chain to be reported broken');
  return { index: verdict.index, fault: verdict.fault };
}

/** Re-hashes an edited event so it is self-consistent (what a forger without a key can always do). */
function forge(event: Omit<AuditEvent, 'hash'>): AuditEvent {
  return { ...event, hash: computeAuditHash(event) };
}

describe('canonicalJson', () => {
  test('sorts keys at every depth, keeps array order and writes no whitespace', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: null, y: 'é' }], c: true } }),
      '{"a":{"c":true,"d":[3,{"y":"é","z":null}]},"b":1}',
    );
  });

  test('gives the same text whatever order the keys were added in', () => {
    assert.equal(canonicalJson({ x: 1, y: [1, 2], z: 'a' }), canonicalJson({ z: 'a', y: [1, 2], x: 1 }));
  });

  test('leaves out properties whose value is undefined, as JSON does', () => {
    const withUndefined: Record<string, string | undefined> = { a: 'x', b: undefined };
    assert.equal(canonicalJson(withUndefined as Record<string, string>), '{"a":"x"}');
  });
});

describe('computeAuditHash', () => {
  test('treats null and absent optional fields alike and ignores properties that are not part of an event', () => {
    const [event] = chain(1);
    assert.ok(event);
    const exported = { ...event, sessionId: null, source: null, exportedBy: 'siem' } as unknown as AuditEvent;
    assert.equal(computeAuditHash(exported), event.hash);
  });

  test('changes when any hashed field changes, prevHash included', () => {
    const [event] = chain(1);
    assert.ok(event);
    assert.notEqual(computeAuditHash({ ...event, prevHash: '1'.repeat(64) }), event.hash);
    assert.notEqual(computeAuditHash({ ...event, details: { namespace: 'payments', seq: 2 } }), event.hash);
    assert.notEqual(computeAuditHash({ ...event, source: { address: '192.0.2.1' } }), event.hash);
  });
});

describe('verifyChain', () => {
  test('accepts an empty trail and a valid chain, reporting the head', () => {
    assert.deepEqual(verifyChain([]), { ok: true, count: 0, head: { seq: 0, hash: GENESIS_HASH } });
    const events = chain(5);
    assert.deepEqual(verifyChain(events), { ok: true, count: 5, head: { seq: 5, hash: events[4]?.hash } });
  });

  test('verifies a slice from the event before it, and reports a gap without it', () => {
    const events = chain(6);
    const before = events[2];
    assert.ok(before);
    assert.equal(verifyChain(events.slice(3), { previous: { seq: before.seq, hash: before.hash } }).ok, true);
    assert.deepEqual(fault(events.slice(3)), { index: 0, fault: 'gap' });
  });

  test('reports a changed field as a hash mismatch at that event', () => {
    const events = chain(5);
    events[1] = { ...(events[1] as AuditEvent), outcome: 'refused' };
    assert.deepEqual(fault(events), { index: 1, fault: 'hash-mismatch' });
  });

  test('reports a first event that does not start from the genesis as a broken link', () => {
    const [first, ...rest] = chain(3);
    assert.ok(first);
    assert.deepEqual(fault([forge({ ...first, prevHash: 'f'.repeat(64) }), ...rest]), {
      index: 0,
      fault: 'broken-link',
    });
  });

  test('reports two swapped events as a reorder at the first of them', () => {
    const events = chain(4);
    const [a, b, c, d] = events as [AuditEvent, AuditEvent, AuditEvent, AuditEvent];
    assert.deepEqual(fault([b, a, c, d]), { index: 0, fault: 'reorder' });
    assert.deepEqual(fault([a, b, d, c]), { index: 2, fault: 'reorder' });
  });

  test('reports a deleted event as a gap where it was', () => {
    const events = chain(5);
    assert.deepEqual(fault(events.filter((_, i) => i !== 3)), { index: 3, fault: 'gap' });
  });

  test('reports an inserted event, forged with a valid hash, at its own index', () => {
    const events = chain(5);
    const [, second, third] = events as [AuditEvent, AuditEvent, AuditEvent];
    const linked = forge({ ...third, actor: 'mallory@vendor.example', prevHash: second.hash });
    assert.deepEqual(fault([...events.slice(0, 2), linked, ...events.slice(2)]), { index: 2, fault: 'inserted' });
    const unlinked = forge({ ...third, seq: 99, prevHash: 'a'.repeat(64) });
    assert.deepEqual(fault([...events.slice(0, 2), unlinked, ...events.slice(2)]), { index: 2, fault: 'inserted' });
    // Placed after the genuine event it competes with, the forgery is still the one reported.
    assert.deepEqual(fault([...events.slice(0, 3), linked, ...events.slice(3)]), { index: 3, fault: 'inserted' });
  });

  test('reports a duplicated event at the copy', () => {
    const events = chain(4);
    assert.deepEqual(fault([...events.slice(0, 3), events[2] as AuditEvent, events[3] as AuditEvent]), {
      index: 3,
      fault: 'inserted',
    });
  });

  test('reports a replaced last event that does not link to its predecessor as a broken link', () => {
    const events = chain(4);
    const last = events[3] as AuditEvent;
    events[3] = forge({ ...last, prevHash: 'b'.repeat(64) });
    assert.deepEqual(fault(events), { index: 3, fault: 'broken-link' });
  });

  test('names the index, seq and reason in its message', () => {
    const events = chain(3);
    const verdict = verifyChain(events.filter((_, i) => i !== 1));
    assert.equal(verdict.ok, false);
    if (!verdict.ok) {
      assert.equal(verdict.seq, 3);
      assert.match(verdict.message, /index 1 \(seq 3\).*seq 2\.\.2 are missing/);
    }
  });
});

describe('the two-level hash', () => {
  test('the content text is the canonical JSON of every field but seq and the links', () => {
    const events = chain(3);
    const withEverything = forge({
      ...(events[2] as AuditEvent),
      sessionId: 's_1',
      engagementId: 'e_1',
      personId: 'p_1',
      cluster: 'prod',
      namespace: 'payments',
      reason: 'naïve "quoted" \\ text',
      source: { address: '192.0.2.7:51544', userAgent: 'kubectl/v1.37.2' },
      details: { z: [1, { b: 2, a: 1 }], a: null },
    });
    for (const event of [...events, withEverything]) {
      const { seq: _seq, prevHash: _prevHash, hash: _hash, ...content } = event;
      assert.equal(auditContentText(event), canonicalJson(content as unknown as JsonObject));
    }
  });

  test('an event hashes as its link: seq, previous hash and content hash', () => {
    const [event] = chain(1);
    assert.ok(event);
    assert.equal(event.hash, linkAuditHash(event.seq, event.prevHash, auditContentHash(auditContentText(event))));
    assert.notEqual(computeAuditHash({ ...event, seq: 2 }), event.hash, 'the seq is bound into the hash');
  });

  test('a chain whose events are partly reduced to their links verifies, and a changed link does not', () => {
    const events: ChainEntry[] = chain(5);
    const reduced = (event: AuditEvent): AuditLink => ({
      seq: event.seq,
      prevHash: event.prevHash,
      hash: event.hash,
      contentHash: auditContentHash(auditContentText(event)),
    });
    events[1] = reduced(events[1] as AuditEvent);
    events[3] = reduced(events[3] as AuditEvent);
    assert.equal(verifyChain(events).ok, true);
    events[3] = { ...(events[3] as AuditLink), contentHash: 'f'.repeat(64) };
    assert.deepEqual(fault(events as AuditEvent[]), { index: 3, fault: 'hash-mismatch' });
  });
});
