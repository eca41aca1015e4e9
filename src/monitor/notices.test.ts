import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Visa } from '../domain/model.ts';
import type { AuditEvent } from '../store/store.ts';
import { alertFromAudit, expiryNotice, findingAlert, staleAlert } from './notices.ts';

const visa: Visa = {
  id: 'v_1',
  engagementId: 'e_1',
  personId: 'p_cora',
  personEmail: 'cora@vendor.example',
  cluster: 'prod',
  namespaces: ['payments'],
  profile: 'viewer',
  reason: 'JIRA-1',
  requestedAt: Date.UTC(2026, 2, 2, 9),
  requestedSeconds: 3600,
  notBefore: Date.UTC(2026, 2, 2, 9),
  notAfter: Date.UTC(2026, 2, 2, 10),
  state: 'active',
  approvals: [],
  requiredApprovals: 1,
};

const event = (action: string, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  seq: 42,
  at: Date.UTC(2026, 2, 2, 9, 30),
  actor: 'ann@corp.example',
  action,
  visaId: 'v_1',
  cluster: 'prod',
  outcome: 'ok',
  details: {},
  prevHash: '0'.repeat(64),
  hash: '1'.repeat(64),
  ...extra,
});

describe('alerts from the audit trail', () => {
  test('lifecycle actions become alerts for the holder and the sponsor, one id per audit event', () => {
    const approved = alertFromAudit(event('visa.approved'), { visa, sponsor: 'sam@corp.example' });
    assert.equal(approved?.event, 'visa-approved');
    assert.equal(approved.id, 'visa-approved:42');
    assert.deepEqual(approved.recipients, ['cora@vendor.example', 'sam@corp.example']);
    assert.match(
      approved.text,
      /ann@corp\.example approved visa v_1 \(viewer on prod\/payments for cora@vendor\.example\)/,
    );
    assert.equal(alertFromAudit(event('visa.extension-requested'), { visa })?.event, 'visa-requested');
    assert.equal(alertFromAudit(event('visa.activated'), { visa }), undefined);
    assert.equal(alertFromAudit(event('gateway.request'), { visa }), undefined);
  });

  test('a SCIM user refused for an email its identity provider may not act on is a warning that says what to do', () => {
    const refused = alertFromAudit(
      event('scim.user.refused', {
        actor: 'scim:entra',
        visaId: undefined,
        cluster: undefined,
        outcome: 'refused',
        reason:
          "identity provider 'entra' sent user 'x' with the email sam@corp.example, which …: refused (409), not merged",
        details: { email: 'sam@corp.example', idp: 'entra', linkedTo: ['okta'] },
      }),
      {},
    );
    assert.equal(refused?.event, 'scim-user-refused');
    assert.equal(refused.severity, 'warning');
    assert.equal(refused.personEmail, 'sam@corp.example');
    assert.match(refused.text, /kubevisa identity link sam@corp\.example --idp entra/);
    assert.deepEqual(refused.details.linkedTo, ['okta']);
  });

  test('a repair after an edit, and a re-creation after a deletion, are drift repairs; a first creation is not', () => {
    const details = { namespace: 'payments', name: 'kubevisa-v_1', visaId: 'v_1' };
    const edited = alertFromAudit(event('cluster.rolebinding.repair-delete', { namespace: 'payments', details }), {
      visa,
    });
    assert.match(edited?.text ?? '', /Someone changed .* RoleBinding payments\/kubevisa-v_1/);
    const create = event('cluster.rolebinding.create', { namespace: 'payments', details });
    assert.equal(alertFromAudit(create, { visa }), undefined);
    assert.match(alertFromAudit(create, { visa, recreated: true })?.text ?? '', /Someone deleted/);
  });
});

describe('computed alerts', () => {
  test('an expiry notice names the end and how to extend', () => {
    const notice = expiryNotice(visa, 'sam@corp.example', Date.UTC(2026, 2, 2, 9, 30));
    assert.equal(notice.title, 'Visa v_1 ends in 30 min');
    assert.match(notice.text, /kubevisa extend v_1/);
  });

  test('a stale visa says whether it was ever used and whether kubevisa revoked it', () => {
    const never = staleAlert(
      { visa, lastUsedAt: undefined, idleSince: visa.notBefore, idleMs: 15 * 86_400_000 },
      undefined,
      14 * 86_400_000,
      false,
    );
    assert.match(never.text, /has never been used .*limit is 14\.0 days.*kubevisa revoke v_1/);
    const revoked = staleAlert(
      { visa, lastUsedAt: visa.notBefore, idleSince: visa.notBefore, idleMs: 15 * 86_400_000 },
      undefined,
      14 * 86_400_000,
      true,
    );
    assert.match(revoked.title, /: revoked$/);
  });

  test('a new finding becomes an alert whose id ties it to the cluster and the finding', () => {
    const alert = findingAlert(
      'prod',
      {
        id: 'shadow-access:RoleBinding x/y:User:cora@vendor.example',
        kind: 'shadow-access',
        severity: 'high',
        reason: 'contractor-email',
        summary: 'RoleBinding x/y gives …',
        managed: false,
        builtin: false,
        details: {},
      },
      Date.UTC(2026, 2, 2),
    );
    assert.equal(alert.id, 'shadow-access:prod:shadow-access:RoleBinding x/y:User:cora@vendor.example');
    assert.equal(alert.severity, 'critical');
    assert.equal(alert.title, 'Shadow access in cluster prod');
  });
});
