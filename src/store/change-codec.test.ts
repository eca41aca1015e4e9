import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AccessChange } from './store.ts';
import { MAX_PAYLOAD_BYTES, decodeChange, encodeChange } from './change-codec.ts';

test('splits 1,000 ended visas into payloads PostgreSQL accepts, every id delivered once and in order', () => {
  const visaIds = Array.from({ length: 1000 }, (_, i) => `v_${String(i).padStart(4, '0')}abcdefghijklmnopq`);
  const payloads = encodeChange('origin1', { kind: 'visas-ended', visaIds, reason: 'revoked by ann@corp.example' });
  assert.ok(payloads.length > 1);
  for (const payload of payloads) assert.ok(Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES);
  const received = payloads.flatMap((payload) => {
    const decoded = decodeChange(payload);
    assert.equal(decoded?.origin, 'origin1');
    assert.equal(decoded?.change.kind, 'visas-ended');
    return decoded?.change.kind === 'visas-ended' ? decoded.change.visaIds : [];
  });
  assert.deepEqual(received, visaIds);
});

test('cuts a long reason so that a payload stays under the limit whatever the text', () => {
  const [payload] = encodeChange('o', { kind: 'person-deprovisioned', personId: 'p_1', reason: '€'.repeat(5000) });
  assert.ok(Buffer.byteLength(payload!) <= MAX_PAYLOAD_BYTES);
  const decoded = decodeChange(payload!);
  assert.equal(decoded?.change.kind === 'person-deprovisioned' && decoded.change.reason.length, 500);
});

test("cuts a reason of 500 characters that holds emoji without splitting one: a lone half broke the receiver's audit trail", () => {
  // requireText counts characters (code points), the cut counts UTF-16 units: 499 letters and an emoji are 500
  // characters, 501 units. Cut at 500 units, the receiver's gateway recorded its cut streams with the emoji's first
  // half as their reason, which the trail refuses, and then refused every request.
  const reason = `${'r'.repeat(499)}\u{1F600}`;
  for (const change of [
    { kind: 'visas-ended', visaIds: ['v_1'], reason },
    { kind: 'person-deprovisioned', personId: 'p_1', reason },
  ] satisfies AccessChange[]) {
    const decoded = decodeChange(encodeChange('o', change)[0]!);
    const received = decoded?.change.kind === change.kind && 'reason' in decoded.change ? decoded.change.reason : '';
    assert.equal(received, 'r'.repeat(499));
    assert.ok(received.isWellFormed());
  }
  // A sender that did not cut (another version) is cut by the receiver the same way.
  const raw = JSON.stringify({
    o: 'x',
    c: { kind: 'visas-ended', visaIds: ['v_1'], reason: `${'r'.repeat(499)}\u{1F600}!` },
  });
  const decoded = decodeChange(raw);
  assert.equal(decoded?.change.kind === 'visas-ended' && decoded.change.reason, 'r'.repeat(499));
});

test('round-trips every kind of change', () => {
  const changes: AccessChange[] = [
    { kind: 'visas-changed' },
    { kind: 'sessions-ended', sessionIds: ['s_1', 's_2'] },
    { kind: 'clusters-changed', clusters: ['prod', 'staging'] },
    { kind: 'person-deprovisioned', personId: 'p_9', reason: 'offboarded' },
    { kind: 'cluster-registry-changed' },
  ];
  for (const change of changes) {
    const payloads = encodeChange('o', change);
    assert.equal(payloads.length, 1);
    assert.deepEqual(decodeChange(payloads[0]!)?.change, change);
  }
});

test('a change of clusters that names visas is split by its visas, each payload with every cluster', () => {
  const visaIds = Array.from({ length: 1000 }, (_, i) => `v_${String(i).padStart(4, '0')}abcdefghijklmnopq`);
  const payloads = encodeChange('o', { kind: 'clusters-changed', clusters: ['prod', 'dev'], visaIds });
  assert.ok(payloads.length > 1);
  const received: string[] = [];
  for (const payload of payloads) {
    assert.ok(Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES);
    const change = decodeChange(payload)?.change;
    assert.ok(change?.kind === 'clusters-changed');
    assert.deepEqual(change.clusters, ['prod', 'dev']);
    received.push(...(change.visaIds ?? []));
  }
  assert.deepEqual(received, visaIds);
});

test('clusters too many to carry visas beside them are sent without the visas (converged in full)', () => {
  const clusters = Array.from({ length: 300 }, (_, i) => `cluster-${String(i).padStart(3, '0')}-abcdef`);
  const payloads = encodeChange('o', { kind: 'clusters-changed', clusters, visaIds: ['v_1'] });
  const changes = payloads.map((payload) => decodeChange(payload)?.change);
  assert.ok(changes.every((change) => change?.kind === 'clusters-changed' && change.visaIds === undefined));
  assert.deepEqual(
    changes.flatMap((change) => (change?.kind === 'clusters-changed' ? change.clusters : [])),
    clusters,
  );
});

test('visa ids that are not ids are dropped, and the clusters kept: the receiver converges them in full', () => {
  const decoded = decodeChange('{"o":"x","c":{"kind":"clusters-changed","clusters":["prod"],"visaIds":["v 1"]}}');
  assert.deepEqual(decoded?.change, { kind: 'clusters-changed', clusters: ['prod'] });
  const named = decodeChange('{"o":"x","c":{"kind":"clusters-changed","clusters":["prod"],"visaIds":["v_1"]}}');
  assert.deepEqual(named?.change, { kind: 'clusters-changed', clusters: ['prod'], visaIds: ['v_1'] });
});

test('refuses payloads that are not exactly a change', () => {
  for (const payload of [
    'not json',
    '[]',
    '{"o":"x"}',
    '{"o":"x","c":{"kind":"visas-ended","visaIds":["v 1"],"reason":"r"}}',
    '{"o":"x","c":{"kind":"visas-ended","visaIds":[1],"reason":"r"}}',
    '{"o":"x","c":{"kind":"visas-ended","visaIds":["v1"]}}',
    '{"o":"x","c":{"kind":"drop-tables"}}',
    '{"o":"x","c":{"kind":"person-deprovisioned","personId":"../p","reason":"r"}}',
    // A reason the audit trail cannot hold: the receiver records its cut streams under it.
    '{"o":"x","c":{"kind":"visas-ended","visaIds":["v1"],"reason":"r\\ud800"}}',
    '{"o":"x","c":{"kind":"person-deprovisioned","personId":"p1","reason":"r\\u0000"}}',
    '{"o":1,"c":{"kind":"visas-changed"}}',
  ]) {
    assert.equal(decodeChange(payload), undefined, payload);
  }
});

test('with a key, payloads are signed and only a payload signed with that key decodes', () => {
  const key = Buffer.alloc(32, 7);
  const change: AccessChange = { kind: 'visas-ended', visaIds: ['v_1'], reason: 'revoked by ann@corp.example' };
  const [signed] = encodeChange('o1', change, key);
  assert.match(signed!, /^[A-Za-z0-9_-]{43}\.\{/);
  assert.deepEqual(decodeChange(signed!, key), { origin: 'o1', change, at: 0, seq: 0 });
  const stamp = { channel: 'kubevisa_changes_a', at: 1_800_000_000_000, seq: 41 };
  const [stamped] = encodeChange('o1', change, key, stamp);
  assert.deepEqual(decodeChange(stamped!, key, 'kubevisa_changes_a'), { origin: 'o1', change, at: stamp.at, seq: 41 });
  assert.equal(decodeChange(stamped!, key, 'kubevisa_changes_b'), undefined, 'valid on its own channel only');
  assert.equal(decodeChange(stamped!, key), undefined);
  const [unsigned] = encodeChange('o1', change);
  assert.equal(decodeChange(unsigned!, key), undefined, 'an unsigned payload is refused');
  assert.equal(decodeChange(signed!, Buffer.alloc(32, 8)), undefined, 'one signed with another key is refused');
  const tampered = signed!.replace('v_1', 'v_2');
  assert.equal(decodeChange(tampered, key), undefined, 'one changed after signing is refused');
  assert.equal(decodeChange(`${'A'.repeat(43)}.${unsigned}`, key), undefined, 'a made-up signature is refused');
  assert.equal(decodeChange('', key), undefined);
  // A signed payload of the largest change still fits PostgreSQL's 8000 bytes.
  const visaIds = Array.from({ length: 1000 }, (_, i) => `v_${String(i).padStart(4, '0')}abcdefghijklmnopq`);
  for (const payload of encodeChange('o1', { kind: 'visas-ended', visaIds, reason: 'x'.repeat(500) }, key, stamp)) {
    assert.ok(Buffer.byteLength(payload) < 8000);
  }
});
