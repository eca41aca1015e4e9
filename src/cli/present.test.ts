import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { coarseDuration, describeVisa, nextStep, relativeTime, visaTable } from './present.ts';
import { aVisa } from './testing/fake-api.ts';

const NOW = Date.parse('2026-03-02T10:00:00Z');

describe('relative times', () => {
  test('use at most two units, rounded down, in the future and the past', () => {
    assert.equal(relativeTime('2026-03-02T13:00:30Z', NOW), 'in 3h');
    assert.equal(relativeTime('2026-03-02T12:15:00Z', NOW), 'in 2h15m');
    assert.equal(relativeTime('2026-03-02T09:55:00Z', NOW), '5m ago');
    assert.equal(relativeTime('2026-03-04T14:00:00Z', NOW), 'in 2d4h');
    assert.equal(relativeTime('2026-03-02T10:00:00Z', NOW), 'now');
    assert.equal(relativeTime('not a time', NOW), '');
  });

  test('durations below a minute are seconds', () => {
    assert.equal(coarseDuration(45), '45s');
    assert.equal(coarseDuration(3600), '1h');
  });
});

describe('visas for people', () => {
  test('the table shows the deadline with how far away it is', () => {
    const visa = aVisa({ state: 'active', notAfter: '2026-03-02T18:00:00Z', namespaces: ['a', 'b'] }, NOW);
    const { rows } = visaTable([visa], NOW);
    assert.deepEqual(rows[0]?.slice(2, 7), ['prod', 'a,b', 'developer', 'active', '2026-03-02T18:00:00Z (in 8h)']);
  });

  test('a pending request shows the duration asked, not an end counted from the request', () => {
    // As the API sends it: no window until approval fixes one.
    const { notBefore: _start, notAfter: _end, ...pending } = aVisa({ requestedDuration: '1m' }, NOW);
    const { rows } = visaTable([pending], NOW);
    assert.equal(rows[0]?.[5], 'requested');
    assert.equal(rows[0]?.[6], '1m from approval');
    assert.match(describeVisa(pending, NOW), /window: {2}1m from approval \(fixed when approved\)\n/);
    assert.doesNotMatch(describeVisa(pending, NOW), /ends in/);
    const later = { ...pending, requestedDuration: '2h', notBefore: '2026-03-03T09:00:00Z' };
    assert.equal(visaTable([later], NOW).rows[0]?.[6], '2h from 2026-03-03T09:00:00Z (or approval, if later)');
  });

  test('the next step follows the state', () => {
    assert.match(nextStep(aVisa({ state: 'requested', requiredApprovals: 2 }, NOW), NOW), /^Next: 2 approvals needed/);
    assert.match(nextStep(aVisa({ state: 'active' }, NOW), NOW), /kubevisa kubeconfig --cluster prod/);
    assert.match(
      nextStep(aVisa({ state: 'approved', notBefore: '2026-03-03T09:00:00Z' }, NOW), NOW),
      /access starts in 23h/,
    );
    assert.match(nextStep(aVisa({ state: 'denied', endReason: 'use staging' }, NOW), NOW), /denied: use staging/);
  });
});
