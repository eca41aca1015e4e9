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
    '{"o":1,"c":{"kind":"visas-changed"}}',
  ]) {
    assert.equal(decodeChange(payload), undefined, payload);
  }
});
