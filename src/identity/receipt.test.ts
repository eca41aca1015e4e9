import assert from 'node:assert/strict';
import { test } from 'node:test';
import { summarize, whatHappened, type Receipt } from './receipt.ts';

const receipt = (
  kind: Receipt['trigger']['kind'],
  by: string,
  status: 'suspended' | 'deprovisioned',
  reason = 'why',
): Omit<Receipt, 'summary'> => ({
  id: 'o_1',
  person: { id: 'p_1', email: 'cora@vendor.example', status },
  trigger: { kind, by, reason },
  status: 'proven',
  startedAt: '2030-01-15T09:00:00.000Z',
  steps: [],
  timings: { committed: 0, complete: 1500 },
});

test('the summary says what actually happened: deleted, deactivated, offboarded by whom', () => {
  assert.equal(
    whatHappened(receipt('scim', 'scim:okta', 'deprovisioned')),
    'cora@vendor.example deprovisioned (deleted at okta)',
  );
  assert.equal(
    whatHappened(receipt('scim', 'scim:entra', 'suspended')),
    'cora@vendor.example suspended (deactivated at entra)',
  );
  assert.equal(
    whatHappened(receipt('admin', 'sam@corp.example', 'deprovisioned')),
    'cora@vendor.example offboarded by sam@corp.example',
  );
  assert.equal(
    whatHappened(receipt('sync', 'sync:dev-idp', 'deprovisioned')),
    'cora@vendor.example deprovisioned (no longer listed by dev-idp)',
  );
  assert.equal(
    whatHappened(receipt('sync', 'sync:dev-idp', 'suspended')),
    'cora@vendor.example suspended (disabled in dev-idp)',
  );
  assert.equal(
    whatHappened(receipt('refresh', 'idp-refresh', 'suspended')),
    'cora@vendor.example suspended (the identity provider refused to renew a login)',
  );
  assert.equal(
    summarize(receipt('admin', 'sam@corp.example', 'deprovisioned', 'contract ended')),
    'cora@vendor.example offboarded by sam@corp.example: contract ended. All 0 steps proven by live calls in 1.5 s.',
  );
  assert.doesNotMatch(summarize(receipt('scim', 'scim:okta', 'deprovisioned')), /deactivated/);
});
